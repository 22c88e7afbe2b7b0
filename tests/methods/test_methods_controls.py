"""The fixed wrong answer of the incorrect-label control: a table, and never the truth under
the run's own answer checker."""

from __future__ import annotations

import random
from decimal import Decimal

import pytest

from mgrpo.answers import AnswerChecker
from mgrpo.methods.controls import wrong_answer


@pytest.mark.parametrize(("truth", "wrong"), [
    ("41", "42"), ("-1", "0"), ("2.5", "3.5"), ("0.10", "1.10"), (" 7 ", "8"),
    ("A", "B"), ("D", "A"), ("E", "F"), ("J", "A"),
    ("\\frac{1}{2}", "(\\frac{1}{2})+1"), ("x", "(x)+1"),
])
def test_wrong_answer_table(truth, wrong):
    assert wrong_answer(truth) == wrong


def test_the_wrong_answer_is_never_equivalent_to_the_truth():
    rng = random.Random(0)
    numbers = [str(rng.randint(-10**6, 10**6)) for _ in range(20)]
    numbers += [f"{rng.uniform(-1000, 1000):.2f}" for _ in range(10)]
    expressions = ["\\frac{1}{2}", "\\sqrt{2}", "2\\pi", "x^2+1"]
    checker = AnswerChecker()
    try:
        for truth in numbers + expressions:
            assert not checker.equivalent(truth, wrong_answer(truth)), truth
        for truth in numbers:  # a number: exactly one more
            assert checker.equivalent(str(Decimal(truth) + 1), wrong_answer(truth)), truth
    finally:
        checker.close()
