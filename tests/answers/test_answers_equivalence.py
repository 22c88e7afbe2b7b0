"""Equivalence tables: (reference, candidate, expected) from realistic final answers.

Every pair goes through the public checker; pairs decided by the fast path are also checked
against math-verify alone (a fast path may only say what the slow path would say).
"""

from __future__ import annotations

import threading

import pytest

from mgrpo.answers import (
    AnswerChecker,
    WorkerStartError,
    fast_compare,
    is_equivalent,
    normalize_answer,
)

# (reference, candidate, expected)
CASES = [
    # fractions vs decimals
    ("\\frac{1}{2}", "0.5", True),
    ("\\frac{1}{2}", "\\dfrac{1}{2}", True),
    ("\\frac12", "\\frac{1}{2}", True),
    ("\\tfrac{3}{4}", "0.75", True),
    ("\\frac{1}{3}", "0.3333333", True),
    ("\\frac{1}{3}", "0.33", False),
    ("\\frac{2}{4}", "\\frac{1}{2}", True),
    ("-\\frac{1}{2}", "\\frac{-1}{2}", True),
    ("\\frac{7}{2}", "3.5", True),
    ("\\frac{7}{2}", "3\\frac{1}{2}", True),
    ("\\frac{1}{2}", "\\frac{1}{3}", False),
    ("1/2", "\\frac{1}{2}", True),
    # radicals
    ("2\\sqrt{2}", "\\sqrt{8}", True),
    ("\\sqrt2", "\\sqrt{2}", True),
    ("\\frac{\\sqrt{3}}{2}", "\\frac{1}{2}\\sqrt{3}", True),
    ("\\frac{1}{\\sqrt{2}}", "\\frac{\\sqrt{2}}{2}", True),
    ("3\\sqrt{3}", "\\sqrt{27}", True),
    ("\\sqrt{3}", "\\sqrt{2}", False),
    ("\\sqrt[3]{8}", "2", True),
    # intervals and unions
    ("[0, 1)", "[0,1)", True),
    ("(-\\infty, 2] \\cup [3, \\infty)", "(-\\infty,2]\\cup[3,\\infty)", True),
    ("(-\\infty, 2] \\cup [3, \\infty)", "(-\\infty, 2) \\cup (3, \\infty)", False),
    ("[0, 1)", "[0, 1]", False),
    ("\\left( -\\infty, 0 \\right)", "(-\\infty,0)", True),
    ("[2, 5]", "[5, 2]", False),
    # tuples / sets
    ("(1, 2)", "(1,2)", True),
    ("(3, -1)", "\\left(3,-1\\right)", True),
    ("(1, 2)", "(2, 1)", False),
    ("\\{1, 2, 3\\}", "\\{3, 2, 1\\}", True),
    ("(\\frac{1}{2}, 3)", "(0.5, 3)", True),
    ("1, 2", "2, 1", True),
    # thousands separators
    ("1000", "1,000", True),
    ("7425000", "7,425,000", True),
    ("1000000", "1{,}000{,}000", True),
    ("12345", "12,346", False),
    ("1000", "1 000", True),
    # units / text
    ("10", "10\\text{ cm}", True),
    ("5", "5 \\text{ apples}", True),
    ("12", "12\\text{ meters}^2", True),
    ("\\text{Monday}", "Monday", True),
    ("\\text{(B)}", "B", True),
    ("6", "\\$6", True),
    ("20", "20\\text{ dollars}", True),
    # degrees
    ("30^\\circ", "30", True),
    ("90^{\\circ}", "90^\\circ", True),
    ("45^\\circ", "60^\\circ", False),
    # percentages
    ("50\\%", "50", True),
    ("25\\%", "0.25", True),
    ("40\\%", "0.5", False),
    # negatives
    ("-5", "-5", True),
    ("-5", "5", False),
    ("-3", "- 3", True),
    ("-0.5", "-\\frac{1}{2}", True),
    ("-2", "-2.0", True),
    # expressions and equations
    ("x^2+2x+1", "(x+1)^2", True),
    ("2x+3", "3+2x", True),
    ("x=2", "2", True),
    ("y = 2x + 3", "y=3+2x", True),
    ("2x+3", "2x-3", False),
    ("\\pi", "3.14159265", True),
    ("2\\pi", "\\pi", False),
    ("\\sin\\frac{\\pi}{6}", "\\frac12", True),
    ("\\binom{5}{2}", "10", True),
    ("\\dbinom{5}{2}", "\\binom52", True),
    ("2^{10}", "1024", True),
    ("\\log_2 8", "3", True),
    # matrices
    ("\\begin{pmatrix} 1 & 2 \\\\ 3 & 4 \\end{pmatrix}",
     "\\begin{pmatrix}1&2\\\\3&4\\end{pmatrix}", True),
    ("\\begin{pmatrix} 1 & 2 \\\\ 3 & 4 \\end{pmatrix}",
     "\\begin{pmatrix} 1 & 2 \\\\ 3 & 5 \\end{pmatrix}", False),
    ("\\begin{pmatrix} \\frac{1}{2} \\\\ 1 \\end{pmatrix}",
     "\\begin{pmatrix} 0.5 \\\\ 1 \\end{pmatrix}", True),
    ("\\begin{bmatrix} 1 & 0 \\\\ 0 & 1 \\end{bmatrix}",
     "\\begin{pmatrix} 1 & 0 \\\\ 0 & 1 \\end{pmatrix}", True),
    # multiple-choice letters
    ("A", "A", True),
    ("A", "B", False),
    ("C", "(C)", True),
    ("D", "\\text{D}", True),
    # integers and decimals
    ("2", "2.0", True),
    ("2", "3", False),
    ("0.1", "0.10", True),
    # LaTeX has no E-notation: math-verify reads 1e2 as 1*e*2 (its policy, kept on purpose)
    ("100", "1e2", False),
    ("3.14", "3.15", False),
]

TIMEOUT_S = 3.0


@pytest.fixture(scope="module")
def checker():
    c = AnswerChecker(timeout_s=TIMEOUT_S)
    yield c
    c.close()


def test_table_is_large_enough():
    assert len(CASES) >= 60
    assert {e for _, _, e in CASES} == {True, False}


def test_table_batch(checker):
    got = checker.equivalent_many([(a, b) for a, b, _ in CASES])
    wrong = [(a, b, e) for (a, b, e), g in zip(CASES, got, strict=True) if g != e]
    assert wrong == []
    assert checker.stats["timeouts"] == 0


@pytest.mark.parametrize("ref,cand,expected", CASES[::7])
def test_table_single_calls_match(checker, ref, cand, expected):
    assert checker.equivalent(ref, cand) is expected


def test_fast_path_agrees_with_math_verify(checker):
    """Every pair the fast path decides, math-verify decides the same way."""
    fast = [(a, b, fast_compare(a, b)) for a, b, _ in CASES]
    decided = [(a, b, v) for a, b, v in fast if v is not None]
    assert len(decided) >= 15  # the fast path actually fires on this table
    before = checker.stats["fast_path"]
    # Defeat the fast path with an extra $..$ pair (same LaTeX object for math-verify).
    slow = checker.equivalent_many([(f"${a}$", f"$\\displaystyle {b}$") for a, b, _ in decided])
    assert [v for _, _, v in decided] == slow
    assert checker.stats["fast_path"] - before < len(decided)


@pytest.mark.parametrize(
    "raw,normal",
    [
        ("\\dfrac{1}{2}", "\\frac{1}{2}"),
        ("\\frac12", "\\frac{1}{2}"),
        ("\\left( 1, 2 \\right)", "(1,2)"),
        ("$2.0$", "2"),
        ("1,000", "1000"),
        ("1, 000", "1,000"),  # a list, not a thousands separator
        ("-0.0", "0"),
        ("\\pi r^2", "\\pi r^2"),
        ("3\\,\\text{cm}", "3\\text{cm}"),
        ("\\text{(B)}.", "(B)"),
    ],
)
def test_normalize_table(raw, normal):
    assert normalize_answer(raw) == normal


def test_fast_path_never_merges_distinct_spellings():
    assert fast_compare("\\pi r", "\\pir") is None
    assert fast_compare("1, 000", "1000") is None
    assert fast_compare("12", "13") is False
    assert fast_compare("", "") is False


def test_none_and_bad_types(checker):
    assert checker.equivalent_many([(None, "1"), ("1", None)]) == [False, False]
    with pytest.raises(TypeError, match="candidate"):
        checker.equivalent("1", 1)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="timeout_s"):
        AnswerChecker(timeout_s=0)
    with pytest.raises(ValueError, match="workers"):
        AnswerChecker(workers=0)


ADVERSARIAL = [
    ("10^{10^{10}}", "10^{10^{10}}+1"),
    ("10^{10^{10}}", "7"),
    ("\\frac{1}{2", "0.5"),
    ("}}}{{{", "1"),
    ("{" * 500 + "1" + "}" * 500, "1"),
    ("(" * 300 + "1" + ")" * 300, "2"),
    ("\\sqrt{" * 200 + "2" + "}" * 200, "2"),
    ("x" * 100_000, "x" * 99_999 + "y"),
    # math-verify 0.9 alone parses only a fragment ("1") of this 2001-term sum and calls it
    # equal to "1"; the checker's max_chars cap refuses it instead.
    ("1+" * 2000 + "1", "1"),
    ("\ud800\udfff", "1"),
    ("\\begin{pmatrix}", "\\end{pmatrix}"),
    ("\x00\x01", "\\frac{}{}"),
]


def test_adversarial_inputs_return_within_timeout(checker):
    import time

    start = time.monotonic()
    got = checker.equivalent_many(ADVERSARIAL)
    elapsed = time.monotonic() - start
    assert got == [False] * len(ADVERSARIAL)
    assert checker.stats["too_complex"] >= 5  # long and deeply nested answers skip math-verify
    assert all(isinstance(g, bool) for g in got)
    # each pair at most one timeout (+ a worker restart, ~1-2 s on a loaded machine)
    assert elapsed < len(ADVERSARIAL) * (TIMEOUT_S + 10)
    assert checker.equivalent("\\frac{1}{2}", "0.5") is True  # still healthy afterwards


def test_forced_hang_is_killed_counted_and_recovered():
    c = AnswerChecker(timeout_s=1.0)
    try:
        c._hang_token = "HANG"  # test hook: the worker sleeps forever on this candidate
        assert c.equivalent("1/3", "0.3333333") is True
        pid_before = c._all[0].proc.pid
        got = c.equivalent_many([("2", "\\sqrt{4}"), ("5", "HANG"), ("\\sqrt{8}", "2\\sqrt{2}")])
        assert got == [True, False, True]
        stats = c.stats
        assert stats["timeouts"] == 1
        assert stats["worker_starts"] == 2
        assert c._all[0].proc.pid != pid_before
        c._hang_token = None
        assert c.equivalent("\\frac{1}{4}", "0.25") is True
    finally:
        c.close()
    with pytest.raises(RuntimeError, match="closed"):
        c.equivalent("1", "2")


def test_crashed_worker_is_replaced(checker):
    assert checker.equivalent("\\frac{2}{6}", "\\frac13") is True
    for worker in list(checker._all):
        worker.proc.kill()
        worker.proc.wait()
    assert checker.equivalent("\\frac{2}{6}", "0.333333333") is True


def test_from_non_main_threads(checker):
    results: dict[int, bool] = {}
    errors: list[BaseException] = []

    def work(i: int) -> None:
        try:
            results[i] = checker.equivalent(f"\\frac{{{i}}}{{2}}", f"{i / 2}")
        except BaseException as e:  # surfaced by the assertion below
            errors.append(e)

    threads = [threading.Thread(target=work, args=(i,)) for i in range(1, 5)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    assert errors == []
    assert results == {1: True, 2: True, 3: True, 4: True}


def test_module_level_is_equivalent_from_thread():
    out: list[bool] = []
    t = threading.Thread(target=lambda: out.append(is_equivalent("\\dfrac{3}{6}", "0.5")))
    t.start()
    t.join(timeout=60)
    assert out == [True]


def test_stats_keys_and_counts(checker):
    before = checker.stats
    assert {"calls", "fast_path", "timeouts", "parse_failures"} <= set(before)
    checker.equivalent_many([("3", "3"), ("\\frac{3}{1}", "3"), ("\\frac{3}{1}", "3")])
    after = checker.stats
    assert after["calls"] - before["calls"] == 3
    assert after["fast_path"] - before["fast_path"] == 1
    assert after["verified"] - before["verified"] == 1  # duplicate pairs compared once
    checker.equivalent("\\undefinedmacro{", "1")
    assert checker.stats["parse_failures"] > after["parse_failures"]


def test_worker_that_cannot_start_raises_clear_error(monkeypatch, tmp_path):
    import mgrpo.answers.checker as checker_module

    broken = tmp_path / "broken_worker.py"
    broken.write_text("import sys\nsys.stderr.write('no math_verify here')\nsys.exit(3)\n")
    monkeypatch.setattr(checker_module, "WORKER_PATH", broken)
    with AnswerChecker(startup_timeout_s=30) as c:
        with pytest.raises(WorkerStartError, match="no math_verify here"):
            c.equivalent("\\frac{1}{2}", "0.5")
        assert c.equivalent("7", "7") is True  # the fast path needs no worker


def test_interrupted_batch_discards_the_worker(monkeypatch):
    with AnswerChecker(timeout_s=TIMEOUT_S) as c:
        assert c.equivalent("\\frac{1}{4}", "0.25") is True
        first = c._all[0]

        def interrupted(*args, **kwargs):
            raise KeyboardInterrupt

        monkeypatch.setattr(first, "read_message", interrupted)
        with pytest.raises(KeyboardInterrupt):
            c.equivalent("\\frac{1}{5}", "0.2")
        assert not first.alive() and first not in c._all
        monkeypatch.undo()
        assert c.equivalent("\\frac{1}{5}", "0.2") is True


DECIMAL_PAIRS = [
    (".50", "6"), ("0.5", "0.6"), ("-2.5", "2.5"), ("3.14159", "3.1416"), ("1.000001", "1"),
    ("0.333333", "0.333334"), ("12.75", "12.7"), ("100", "100.5"), ("-0.001", "0.001"),
    ("99999.5", "99999.4"),
]


def test_decimal_fast_path_agrees_with_math_verify(checker):
    """Plain decimals >= 1e-6 apart are decided False without a worker; math-verify itself
    (its worker, fast path bypassed) says False for every one; closer or longer ones still
    go to math-verify."""
    assert all(fast_compare(a, b) is False for a, b in DECIMAL_PAIRS)
    assert checker._verify(list(DECIMAL_PAIRS)) == [False] * len(DECIMAL_PAIRS)
    assert fast_compare("0.3333333", "0.3333334") is None  # < 1e-6 apart: math-verify rounds
    assert fast_compare("1234567890123.5", "1234567890124.5") is None  # > 12 digits
    assert fast_compare("2.50", "2.5") is True
    assert fast_compare("1/2", "0.5") is None
    assert fast_compare("0,111", "0.111") is None  # decimal comma: math-verify says equal


def test_equivalence_for_votes_memoises_and_prefetch_agrees_with_lazy_calls(checker) -> None:
    from mgrpo.answers import Equivalence
    from mgrpo.core.voting import vote_groups

    groups = [["1/2", "0.5", "\\frac{1}{2}", None, "3"], ["x+1", "1+x", "2"]]
    lazy = Equivalence(checker)
    lazy_votes = vote_groups(groups, lazy)
    batched = Equivalence(checker)
    batched.prefetch(groups)
    pairs = {(a, b) for g in groups for a in g if a for b in g if b and a != b}
    assert set(batched.memo) == pairs  # every ordered pair of distinct answers, decided once
    assert vote_groups(groups, batched) == lazy_votes
    assert all(batched.memo[key] == value for key, value in lazy.memo.items())
    assert lazy("7", "7") and ("7", "7") not in lazy.memo  # identical strings: no checker call
    choice = Equivalence(None, kind="choice")  # option letters never reach a checker
    assert choice(" b", "B") and not choice("A", "B")
    choice.prefetch(groups)
    assert choice.memo == {}


def test_for_kind_is_the_one_constructor() -> None:
    from mgrpo.answers import Equivalence

    choice = Equivalence.for_kind(None, "choice")
    assert choice("a", "A") and not choice("A", "B")  # no checker needed for letters
    assert Equivalence.for_kind(object(), "math").kind == "math"
    with pytest.raises(ValueError, match="answer kind 'letters'"):
        Equivalence.for_kind(None, "letters")
