"""mgrpo.report.stats against loop references and textbook values."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mgrpo.report import stats as S

PVALUES = st.lists(st.floats(0.0, 1.0, allow_nan=False), min_size=1, max_size=12)
SAMPLES = st.lists(st.floats(-50.0, 50.0, allow_nan=False), min_size=2, max_size=15)


def holm_reference(p: list[float]) -> list[float]:
    """Textbook definition, one p-value at a time: max over the sorted prefix up to it."""
    m = len(p)
    order = sorted(range(m), key=lambda i: p[i])
    out = [0.0] * m
    for rank, i in enumerate(order):
        out[i] = max(min(1.0, (m - j) * p[order[j]]) for j in range(rank + 1))
    return out


@settings(max_examples=200, deadline=None)
@given(PVALUES)
def test_holm_matches_the_step_down_definition(p):
    adjusted = S.holm(p)
    assert adjusted == pytest.approx(holm_reference(p))
    assert all(raw <= adj <= 1.0 for raw, adj in zip(p, adjusted))
    # order preserving: a smaller raw p never gets a larger adjusted p
    for i, j in itertools.product(range(len(p)), repeat=2):
        if p[i] < p[j]:
            assert adjusted[i] <= adjusted[j]


def test_holm_leaves_nan_out_of_the_family():
    assert S.holm([0.01, math.nan, 0.04]) == pytest.approx([0.02, math.nan, 0.04], nan_ok=True)
    assert S.holm([0.01, 0.04]) == pytest.approx([0.02, 0.04])


@settings(max_examples=100, deadline=None)
@given(SAMPLES)
def test_t_interval_against_the_formula(values):
    a = np.array(values)
    got = S.t_interval(values)
    assert got.mean == pytest.approx(a.mean())
    half = 0.0
    if a.std(ddof=1) > 0:
        from scipy import stats

        half = stats.t.ppf(0.975, a.size - 1) * a.std(ddof=1) / math.sqrt(a.size)
    assert got.high - got.mean == pytest.approx(half, abs=1e-9)
    assert got.mean - got.low == pytest.approx(half, abs=1e-9)


def test_t_interval_textbook_value():
    # n = 2, values 5 and 10: mean 7.5, s = 3.5355, t_{0.975, 1} = 12.7062
    got = S.t_interval([5.0, 10.0])
    assert (got.low, got.high) == pytest.approx((7.5 - 31.766, 7.5 + 31.766), abs=1e-3)
    assert S.t_interval([3.0]).fmt() == "+3.0"
    assert S.t_interval([]).fmt() == "—"


@settings(max_examples=50, deadline=None)
@given(SAMPLES)
def test_bootstrap_interval_is_seeded_and_inside_the_range(values):
    got = S.bootstrap_interval(values, resamples=500, seed=3)
    assert got == S.bootstrap_interval(values, resamples=500, seed=3)
    assert min(values) - 1e-9 <= got.low <= got.high <= max(values) + 1e-9


def test_bootstrap_interval_against_a_loop():
    values = [1.0, 4.0, 2.0, 8.0, 5.0]
    rng = np.random.default_rng(7)
    idx = rng.integers(0, len(values), size=(2000, len(values)))
    means = [sum(values[i] for i in row) / len(values) for row in idx]
    lo, hi = np.percentile(means, [2.5, 97.5])
    got = S.bootstrap_interval(values, resamples=2000, seed=7)
    assert (got.low, got.high) == pytest.approx((lo, hi))


def test_t_pvalue_textbook_and_undefined_cases():
    # t = 7.5 / (3.5355 / sqrt 2) = 3.0 on 1 df: two-sided p = 1 - 2 atan(3) / pi = 0.2048
    assert S.t_pvalue([5.0, 10.0]) == pytest.approx(1 - 2 * math.atan(3.0) / math.pi)
    assert math.isnan(S.t_pvalue([1.0]))
    assert math.isnan(S.t_pvalue([2.0, 2.0, 2.0]))


def fisher_reference(a: int, n_a: int, b: int, n_b: int) -> float:
    """Sum of the hypergeometric probabilities no larger than the observed table's."""
    k, n = a + b, n_a + n_b
    def prob(x: int) -> float:
        return math.comb(n_a, x) * math.comb(n_b, k - x) / math.comb(n, k)
    observed = prob(a)
    support = range(max(0, k - n_b), min(k, n_a) + 1)
    return min(1.0, sum(prob(x) for x in support if prob(x) <= observed * (1 + 1e-7)))


@settings(max_examples=200, deadline=None)
@given(st.integers(1, 12), st.integers(1, 12), st.data())
def test_fisher_matches_the_hypergeometric_sum(n_a, n_b, data):
    a = data.draw(st.integers(0, n_a))
    b = data.draw(st.integers(0, n_b))
    assert S.fisher_exact_pvalue(a, n_a, b, n_b) == pytest.approx(fisher_reference(a, n_a, b, n_b))


def test_fisher_rejects_impossible_counts():
    with pytest.raises(ValueError, match="arm a has 4 hits out of 3"):
        S.fisher_exact_pvalue(4, 3, 1, 3)
    assert math.isnan(S.fisher_exact_pvalue(0, 0, 1, 3))


def test_expected_max_normal():
    assert S.expected_max_normal(1) == pytest.approx(0.0, abs=1e-9)
    assert S.expected_max_normal(2) == pytest.approx(1 / math.sqrt(math.pi))
    assert S.expected_max_normal(20) == pytest.approx(1.8675, abs=1e-3)
    rng = np.random.default_rng(0)
    assert S.expected_max_normal(8) == pytest.approx(rng.standard_normal((200_000, 8))
                                                     .max(axis=1).mean(), abs=0.01)
    with pytest.raises(ValueError, match="n must be >= 1"):
        S.expected_max_normal(0)
