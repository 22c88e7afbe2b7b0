"""warmup_cosine: warm-up line, cosine endpoints, monotone decay to the floor, constant."""

from __future__ import annotations

import math

from hypothesis import given, settings
from hypothesis import strategies as st

from mgrpo.core.schedule import warmup_cosine

FAST = settings(deadline=None, max_examples=80, derandomize=True)
shapes = st.integers(1, 200).flatmap(
    lambda total: st.tuples(st.just(total), st.integers(0, total), st.floats(0.0, 1.0))
)


@FAST
@given(shape=shapes)
def test_warmup_rises_linearly_then_the_cosine_falls_from_one_to_the_floor(shape) -> None:
    total, warmup, floor = shape
    values = [warmup_cosine(s, warmup, total, floor) for s in range(total + 5)]
    assert values[:warmup] == [(s + 1) / warmup for s in range(warmup)]
    if warmup < total:
        assert values[warmup] == 1.0  # the cosine starts at 1
        assert math.isclose(values[total], floor, abs_tol=1e-12)  # and reaches the floor at T
        assert values[total:] == [values[total]] * 5  # then stays there
    else:  # the warm-up fills the run: no decay within it
        assert values[total] == 1.0
    decay = values[warmup:total + 1]
    assert all(a >= b - 1e-15 for a, b in zip(decay, decay[1:]))
    assert all(floor - 1e-12 <= v <= 1.0 for v in decay)


@FAST
@given(shape=shapes)
def test_constant_keeps_one_after_the_warmup(shape) -> None:
    total, warmup, floor = shape
    values = [warmup_cosine(s, warmup, total, floor, constant=True) for s in range(total + 3)]
    assert values[:warmup] == [(s + 1) / warmup for s in range(warmup)]
    assert values[warmup:] == [1.0] * (total + 3 - warmup)


def test_midpoint_is_halfway_between_one_and_the_floor() -> None:
    assert warmup_cosine(5, 0, 10, 0.2) == 0.2 + 0.8 * 0.5
    assert warmup_cosine(0, 0, 1, 0.0) == 1.0  # one step: starts at 1
