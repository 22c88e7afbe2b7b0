"""mgrpo.checks: the shared value checks word every error with the key and the value."""

from __future__ import annotations

import math

import pytest
from hypothesis import given
from hypothesis import strategies as st

from mgrpo.checks import check_int, check_number, invalid, require, require_one_of
from mgrpo.config import ConfigError


def test_require_names_the_key_and_raises_the_given_error() -> None:
    require(True, "optim.lr", "must be > 0", error=ConfigError)
    with pytest.raises(ConfigError, match=r"^optim\.lr: must be > 0$"):
        require(False, "optim.lr", "must be > 0", error=ConfigError)
    with pytest.raises(ValueError, match=r"^x: bad$"):
        require(False, "x", "bad")


def test_require_one_of_lists_the_allowed_values() -> None:
    require_one_of("fast", "model.engine", ["fast", "hf"])
    with pytest.raises(ValueError, match=r"^model\.engine: 'slow' is not one of \['fast', 'hf'\]$"):
        require_one_of("slow", "model.engine", ["fast", "hf"])


def test_invalid_words_rule_and_value() -> None:
    err = invalid("LabConfig.task", "a TaskSpec", None)
    assert isinstance(err, ValueError)
    assert str(err) == "LabConfig.task must be a TaskSpec, got None"


@given(st.integers(-50, 50), st.integers(-50, 50))
def test_check_int_accepts_exactly_ints_at_or_above_low(value: int, low: int) -> None:
    if value >= low:
        assert check_int(value, "n", low=low) == value
    else:
        with pytest.raises(ValueError, match=rf"^n must be an int >= {low}, got {value}$"):
            check_int(value, "n", low=low)


@pytest.mark.parametrize("value", [True, 1.0, "1", None])
def test_check_int_rejects_non_ints_and_bools(value: object) -> None:
    with pytest.raises(ValueError, match=r"^k must be a positive int, got "):
        check_int(value, "k", low=1, rule="a positive int")


@given(st.floats(allow_nan=True, allow_infinity=True), st.booleans())
def test_check_number_range(value: float, low_open: bool) -> None:
    inside = math.isfinite(value) and (value > 0.0 if low_open else value >= 0.0) and value <= 1.0
    if inside:
        assert check_number(value, "share", low=0.0, high=1.0, low_open=low_open) == value
    else:
        with pytest.raises(ValueError, match=r"^share must be "):
            check_number(value, "share", low=0.0, high=1.0, low_open=low_open)


def test_check_number_rejects_bool_and_text() -> None:
    for value in (True, "0.5", None):
        with pytest.raises(ValueError, match=r"^share must be a real number, got "):
            check_number(value, "share")
