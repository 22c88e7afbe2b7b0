"""pass@k against brute-force enumeration; summarize (avg@k, pass@1..k, maj@k); overhead."""

from __future__ import annotations

import itertools
import math
import statistics
from fractions import Fraction

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mgrpo.eval import overhead_report, pass_at_k, summarize


def brute_force_pass_at_k(n: int, c: int, k: int) -> Fraction:
    """Fraction of the k-subsets of n samples (the first c correct) holding a correct one."""
    subsets = list(itertools.combinations(range(n), k))
    hits = sum(any(i < c for i in s) for s in subsets)
    return Fraction(hits, len(subsets))


@pytest.mark.parametrize("n", range(1, 9))
def test_pass_at_k_matches_enumeration(n: int) -> None:
    for c in range(n + 1):
        for k in range(1, n + 1):
            assert pass_at_k(n, c, k) == pytest.approx(
                float(brute_force_pass_at_k(n, c, k)), abs=1e-12
            )


def test_pass_at_k_large_n_is_stable_and_exact() -> None:
    # exact reference with big integers; the product form must agree to ~1e-12
    for n, c, k in [(200, 3, 50), (1000, 1, 1), (1000, 999, 1), (5000, 10, 100), (300, 150, 149)]:
        exact = 1 - Fraction(math.comb(n - c, k), math.comb(n, k))
        assert pass_at_k(n, c, k) == pytest.approx(float(exact), rel=1e-12, abs=1e-15)
    assert pass_at_k(1000, 1, 1) == pytest.approx(0.001, rel=1e-12)
    assert pass_at_k(10**6, 0, 10) == 0.0
    assert pass_at_k(10**6, 10**6 - 5, 6) == 1.0
    assert 0.0 < pass_at_k(10**6, 1, 1) < 1e-5


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        ((0, 0, 1), "n >= 1"),
        ((4, 5, 1), "0 <= c <= n"),
        ((4, 2, 0), "1 <= k <= n"),
        ((4, 2, 5), "1 <= k <= n"),
        ((4.0, 2, 1), "n must be an int"),
    ],
)
def test_pass_at_k_rejects_bad_arguments(args: tuple, needle: str) -> None:
    with pytest.raises(ValueError, match=needle):
        pass_at_k(*args)


def test_summarize_by_hand() -> None:
    correct = [[True, False, False], [False, False, False], [True, True, True]]
    out = summarize(correct, [False, False, True])
    assert out["n_problems"] == 3 and out["samples"] == 3
    assert out["avg@k"] == out["accuracy"] == pytest.approx(4 / 9)
    assert out["pass@1"] == pytest.approx(4 / 9)  # pass@1 with k samples equals avg@k
    assert out["pass@2"] == pytest.approx((2 / 3 + 0 + 1) / 3)
    assert out["pass@3"] == out["pass@k"] == pytest.approx(2 / 3)
    assert out["maj@k"] == pytest.approx(1 / 3)
    assert summarize([[True]], None)["maj@k"] is None
    with pytest.raises(ValueError, match="same number"):
        summarize([[True], [True, False]], None)


def test_overhead_report() -> None:
    out = overhead_report(10.0, 9.5)
    assert out == {
        "wall_s": 10.0,
        "generate_s": 9.5,
        "overhead_s": pytest.approx(0.5),
        "overhead_fraction": pytest.approx(0.05),
    }
    with pytest.raises(ValueError, match="wall_s > 0"):
        overhead_report(0.0, 0.0)


def test_standard_errors_by_hand() -> None:
    correct = [[True, False, False], [False, False, False], [True, True, True]]
    out = summarize(correct, [False, False, True])
    # per-problem avg@k values 1/3, 0, 1: sample std / sqrt(3)
    assert out["avg@k_stderr"] == out["accuracy_stderr"] == pytest.approx(
        statistics.stdev([1 / 3, 0, 1]) / math.sqrt(3))
    assert out["pass@2_stderr"] == pytest.approx(statistics.stdev([2 / 3, 0, 1]) / math.sqrt(3))
    assert out["pass@3_stderr"] == out["pass@k_stderr"] == pytest.approx(
        statistics.stdev([1, 0, 1]) / math.sqrt(3))
    assert out["maj@k_stderr"] == pytest.approx(statistics.stdev([0, 0, 1]) / math.sqrt(3))
    one = summarize([[True, False]], None)
    assert one["avg@k_stderr"] is None and one["maj@k_stderr"] is None  # n < 2: undefined
    assert summarize([[True], [True]], [True, True])["avg@k_stderr"] == 0.0


@settings(max_examples=60, deadline=None)
@given(st.lists(st.lists(st.booleans(), min_size=3, max_size=3), min_size=2, max_size=40))
def test_every_figure_has_a_stderr_equal_to_std_over_sqrt_n(correct: list[list[bool]]) -> None:
    out = summarize(correct, [row[0] for row in correct])
    n = len(correct)
    for name in ("avg@k", "pass@1", "pass@2", "pass@3", "pass@k", "maj@k", "accuracy"):
        assert out[f"{name}_stderr"] is not None and out[f"{name}_stderr"] >= 0
    assert out["avg@k_stderr"] == pytest.approx(
        statistics.stdev([sum(r) / 3 for r in correct]) / math.sqrt(n), abs=1e-12)
    assert out["maj@k_stderr"] == pytest.approx(
        statistics.stdev([float(r[0]) for r in correct]) / math.sqrt(n), abs=1e-12)


def test_stderr_agrees_with_lm_evaluation_harness() -> None:
    metrics = pytest.importorskip("lm_eval.api.metrics", reason="lm-eval not installed (pip install 'mgrpo[lm-eval]')")
    rows = [[True], [False], [False], [True], [True], [False], [False]]
    out = summarize(rows, [r[0] for r in rows])
    assert out["accuracy_stderr"] == pytest.approx(metrics.mean_stderr([float(r[0]) for r in rows]), rel=1e-12)
