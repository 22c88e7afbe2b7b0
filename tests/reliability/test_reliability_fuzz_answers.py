"""Hostile model output against the answer extractor and checker (hypothesis).

Complements tests/answers/test_answers_fuzz.py (short LaTeX-ish token soup) with what a
collapsing or adversarial policy emits: deeply nested braces/fractions/boxes, megabyte-sized
outputs, invalid UTF-8 (bytes decoded with surrogateescape / replace), NUL and control
characters, and expressions built to make SymPy hang or explode (towers of powers, huge
factorials). Properties: extraction returns str | None within a time bound that scales with
the input; the checker returns a bool per pair within its per-pair timeout (plus a worker
restart), no exception escapes, the worker answers promptly afterwards (nothing hung) and
closing it leaves no child process behind.
"""

from __future__ import annotations

import os
import time

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mgrpo.answers import ANSWER_KINDS, AnswerChecker, extract_answer

CHECK_TIMEOUT_S = 1.5
# A timed-out pair costs the timeout plus a worker restart (slow on a loaded 2-core machine).
PER_PAIR_BUDGET_S = CHECK_TIMEOUT_S + 15.0
# Extraction is linear-time; 10 s per MB is far above its cost even on a loaded machine.
EXTRACT_S_PER_MB = 10.0
EXTRACT_MIN_BUDGET_S = 2.0
EXTRACT_EXAMPLES = 300
HUGE_EXAMPLES = 25
CHECKER_EXAMPLES = 12

ATOMS = ["1", "2", "x", "\\pi", "\\infty", "10^{10^{10}}", "(10^9)!", "2^{2^{2^{2^{99}}}}",
         "\\sqrt{-1}", "0.\\overline{3}", "1/0", "\\emptyset", "e^{i\\pi}", "\\text{yes}", "A"]
WRAPPERS = ["\\boxed{%s}", "\\frac{%s}{%s}", "{%s}", "\\left(%s\\right)", "\\sqrt{%s}",
            "%s^{%s}", "\\begin{pmatrix}%s & %s\\end{pmatrix}", "$%s$", "\\text{%s}", "(%s, %s]"]


def _wrap(template: str, inner: list[str]) -> str:
    slots = template.count("%s")
    return template % tuple((inner * slots)[:slots])


latex = st.recursive(
    st.sampled_from(ATOMS) | st.text(max_size=4),
    lambda children: st.builds(_wrap, st.sampled_from(WRAPPERS), st.lists(children, min_size=1, max_size=2)),
    max_leaves=60,
)
invalid_utf8 = st.binary(max_size=200).flatmap(
    lambda raw: st.sampled_from([raw.decode("utf-8", "surrogateescape"), raw.decode("utf-8", "replace")])
)
controls = st.text(alphabet=st.characters(max_codepoint=0x1F) | st.sampled_from("\\{}$#"), max_size=50)
text_like = st.one_of(latex, invalid_utf8, controls,
                      st.builds(lambda a, b: f"Let me think. {a}\nThe answer is {b}.", latex, latex))


def _deep(depth: int, opener: str, closer: str, core: str = "1") -> str:
    return opener * depth + core + closer * depth


huge = st.one_of(
    st.builds(lambda d: _deep(d, "\\boxed{", "}"), st.integers(1_000, 50_000)),
    st.builds(lambda d: _deep(d, "\\frac{", "}{2}"), st.integers(500, 20_000)),
    st.builds(lambda d: "\\boxed{" * d, st.integers(1_000, 50_000)),  # never closed
    st.builds(lambda d: "{" * d + "}" * (d // 2), st.integers(1_000, 100_000)),
    st.builds(lambda s, n: s * n, st.sampled_from(["The answer is 7. ", "#### 3\n", "(B) ", "$",
                                                   "9", "\\\\", "answer: "]),
              st.integers(10_000, 150_000)),
)


def _budget(text: str) -> float:
    return EXTRACT_MIN_BUDGET_S + EXTRACT_S_PER_MB * len(text) / 1e6


def _check_extract(text: str, kind: str) -> None:
    start = time.monotonic()
    result = extract_answer(text, kind=kind)
    elapsed = time.monotonic() - start
    assert result is None or isinstance(result, str)
    assert elapsed < _budget(text), f"{elapsed:.1f}s for {len(text)} chars ({kind})"


@settings(max_examples=EXTRACT_EXAMPLES, deadline=None, suppress_health_check=list(HealthCheck))
@given(text=text_like, kind=st.sampled_from(sorted(ANSWER_KINDS)))
def test_extract_survives_adversarial_latex_and_bad_utf8(text, kind):
    _check_extract(text, kind)


@settings(max_examples=HUGE_EXAMPLES, deadline=None, suppress_health_check=list(HealthCheck))
@given(text=huge, kind=st.sampled_from(sorted(ANSWER_KINDS)))
def test_extract_is_bounded_on_huge_and_deeply_nested_input(text, kind):
    _check_extract(text, kind)


def _children(pid: int) -> set[int]:
    path = f"/proc/{pid}/task/{pid}/children"
    if not os.path.exists(path):
        return set()
    with open(path) as fh:
        return {int(x) for x in fh.read().split()}


@pytest.fixture(scope="module")
def checker():
    before = _children(os.getpid())
    c = AnswerChecker(timeout_s=CHECK_TIMEOUT_S)
    yield c
    c.close()
    deadline = time.monotonic() + 10
    while _children(os.getpid()) - before and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not _children(os.getpid()) - before, "a checker worker outlived close()"


@settings(max_examples=CHECKER_EXAMPLES, deadline=None, suppress_health_check=list(HealthCheck))
@given(pairs=st.lists(st.tuples(text_like, text_like), min_size=1, max_size=4))
def test_checker_returns_bools_in_time_and_stays_responsive(checker, pairs):
    start = time.monotonic()
    out = checker.equivalent_many(pairs)
    assert len(out) == len(pairs) and all(isinstance(x, bool) for x in out)
    assert time.monotonic() - start < PER_PAIR_BUDGET_S * len(pairs)
    start = time.monotonic()
    assert checker.equivalent("\\frac{1}{2}", "0.5") is True  # no hung worker
    assert time.monotonic() - start < PER_PAIR_BUDGET_S


BOMBS = [
    ("2^{2^{2^{2^{99}}}}", "1"), ("10^{10^{10}}", "10^{10^{10}}+1"), ("(10^{9})!", "1"),
    (_deep(400, "\\frac{", "}{2}"), "1"), ("x" * 200_000, "y"), ("\udcff\ud800", "1"),
    ("\\boxed{" * 5_000, "1"), ("9" * 100_000, "9" * 100_000 + "1"), ("\x00", "\x00 "),
]


def test_checker_contains_sympy_bombs(checker):
    start = time.monotonic()
    out = checker.equivalent_many(BOMBS)
    assert all(isinstance(x, bool) for x in out)
    assert not any(out[:4])  # none of the bombs is "equal" to its decoy
    assert time.monotonic() - start < PER_PAIR_BUDGET_S * len(BOMBS)
    assert checker.equivalent("1/2", "0.5") is True
    stats = checker.stats
    assert stats["calls"] >= len(BOMBS)
    print(f"bombs: {len(BOMBS)}, checker stats {stats}")
