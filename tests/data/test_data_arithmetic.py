"""Arithmetic generator: exact answers, seeded, bounded, unique/exclude/accept, worked solutions."""

from __future__ import annotations

import re

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mgrpo.data.arithmetic import (
    evaluate_expression,
    make_problems,
    parse_expression,
    rewrite_expression,
    solution_steps,
    worked_solution,
)
from mgrpo.data.datasets import PromptRecord

STEP = re.compile(r"^(-?\d+)([+\-*])(\d+)=(-?\d+)$")


@pytest.mark.parametrize(
    "kwargs",
    [
        dict(min_operands=2, max_operands=2, max_value=9, ops="+-"),
        dict(min_operands=2, max_operands=5, max_value=30, ops="+-"),
        dict(min_operands=1, max_operands=4, max_value=12, ops="+-*"),
        dict(min_operands=3, max_operands=3, max_value=99, ops="*"),
    ],
)
def test_answers_are_exact_integers(kwargs):
    records = make_problems(300, seed=7, **kwargs)
    assert len(records) == 300
    for r in records:
        # Python's own integer arithmetic (same precedence) is the reference here
        assert r.answer == str(eval(r.question)), r  # noqa: S307 - test-only, generated text
        assert int(r.answer) == evaluate_expression(r.question)


def test_seeded_and_bounded():
    a = make_problems(200, seed=3, min_operands=2, max_operands=4, max_value=15, ops="+-")
    b = make_problems(200, seed=3, min_operands=2, max_operands=4, max_value=15, ops="+-")
    c = make_problems(200, seed=4, min_operands=2, max_operands=4, max_value=15, ops="+-")
    assert a == b
    assert [r.question for r in a] != [r.question for r in c]
    counts = set()
    for r in a:
        assert isinstance(r, PromptRecord)
        operands, operators = parse_expression(r.question)
        counts.add(len(operands))
        assert all(0 <= v <= 15 for v in operands)
        assert set(operators) <= {"+", "-"}
    assert counts == {2, 3, 4}
    assert len({r.id for r in a}) == 200


def test_unique_exclude_accept():
    records = make_problems(150, seed=0, min_operands=2, max_operands=2, max_value=9, unique=True)
    questions = [r.question for r in records]
    assert len(set(questions)) == 150
    excluded = set(questions[:100])
    other = make_problems(50, seed=1, min_operands=2, max_operands=2, max_value=9, exclude=excluded)
    assert not excluded & {r.question for r in other}
    plus_only = make_problems(40, seed=2, max_value=9, accept=lambda q: "+" in q)
    assert all("+" in r.question for r in plus_only)


def test_impossible_unique_request_raises():
    # only 2 * 2 * 2 = 8 distinct questions exist
    with pytest.raises(ValueError, match="distinct problems"):
        make_problems(9, seed=0, max_value=1, unique=True)


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (dict(n=-1), "n must"),
        (dict(min_operands=0), "min_operands"),
        (dict(min_operands=3, max_operands=2), "max_operands"),
        (dict(max_value=-1), "max_value"),
        (dict(ops="/"), "ops"),
        (dict(ops=""), "ops"),
    ],
)
def test_bad_arguments(kwargs, match):
    args = dict(n=3, seed=0) | kwargs
    n = args.pop("n")
    with pytest.raises(ValueError, match=match):
        make_problems(n, **args)


def test_worked_solution_examples():
    assert worked_solution(PromptRecord("a", "3+4-2", "5")) == "3+4=7,7-2=5.\\boxed{5}"
    assert worked_solution(PromptRecord("b", "5", "5")) == "\\boxed{5}"
    assert worked_solution(PromptRecord("c", "2-9", None)) == "2-9=-7.\\boxed{-7}"
    # products first, then left to right
    assert worked_solution(PromptRecord("d", "1+2*3-4", "3")) == "2*3=6,1+6=7,7-4=3.\\boxed{3}"


def test_worked_solution_chain_is_consistent_and_short():
    for r in make_problems(200, seed=11, min_operands=2, max_operands=5, max_value=20, ops="+-*"):
        text = worked_solution(r)
        assert text.endswith(f"\\boxed{{{r.answer}}}")
        chain = text[: -len(f"\\boxed{{{r.answer}}}")].rstrip(".")
        steps = chain.split(",") if chain else []
        assert len(steps) == len(parse_expression(r.question)[0]) - 1
        for step in steps:
            a, op, b, res = (int(g) if g not in "+-*" else g for g in STEP.match(step).groups())
            assert res == {"+": a + b, "-": a - b, "*": a * b}[op], (r, step)
        if steps:
            assert STEP.match(steps[-1]).group(4) == r.answer
    short = make_problems(50, seed=0, min_operands=2, max_operands=4, max_value=9)
    assert max(len(worked_solution(r)) for r in short) <= 40


def test_solution_steps_and_bad_records():
    assert solution_steps("7") == []
    assert solution_steps("2*3*4") == [(2, "*", 3, 6), (6, "*", 4, 24)]
    with pytest.raises(ValueError, match="exact value"):
        worked_solution(PromptRecord("x", "1+1", "3"))
    for bad in ("", "1+", "+1", "1 + 2", "1/2", "a+b"):
        with pytest.raises(ValueError, match="not an arithmetic question"):
            parse_expression(bad)


expressions = st.lists(st.integers(0, 30), min_size=1, max_size=6).flatmap(
    lambda values: st.lists(st.sampled_from("+-*"), min_size=len(values) - 1,
                            max_size=len(values) - 1).map(
        lambda ops: str(values[0]) + "".join(f"{o}{v}" for o, v in zip(ops, values[1:]))))


@settings(deadline=None, max_examples=200, derandomize=True)
@given(question=expressions)
def test_rewrite_expression_keeps_the_value_and_the_operands(question) -> None:
    twin = rewrite_expression(question)
    assert evaluate_expression(twin) == evaluate_expression(question)
    assert sorted(parse_expression(twin)[0]) == sorted(parse_expression(question)[0])
    assert sorted(parse_expression(twin)[1]) == sorted(parse_expression(question)[1])
    assert rewrite_expression(question) == twin  # deterministic


def test_rewrite_expression_examples():
    assert rewrite_expression("7-3+9-1") == "9+7-1-3"  # + commutes, positive terms first
    assert rewrite_expression("2*3+4") == "4+3*2"  # * commutes
    assert rewrite_expression("4-2") == "4-2"  # its own rewrite: unchanged
    assert rewrite_expression("5") == "5"
