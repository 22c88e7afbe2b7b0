"""Value checks shared by the whole package: one place that words a bad value's error.

Two message shapes, both naming the offending key or argument:

- ``require(ok, key, message)`` raises ``"<key>: <message>"`` (the run configuration's shape,
  with ``error=ConfigError``: a recipe key is followed by what is wrong with it);
- ``invalid(name, rule, value)`` builds ``"<name> must be <rule>, got <value!r>"`` (arguments
  and small dataclasses); ``check_int`` and ``check_number`` use it.

Booleans are never accepted where an int or a real number is asked for (``True`` is an
``int`` to Python, never a count or a threshold here). This module imports nothing heavy so
that configuration parsing stays fast.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

__all__ = ["check_int", "check_number", "invalid", "require", "require_one_of"]


def require(ok: bool, key: str, message: str, *, error: type[Exception] = ValueError) -> None:
    """Raise ``error(f"{key}: {message}")`` unless ``ok``."""
    if not ok:
        raise error(f"{key}: {message}")


def require_one_of(
    value: Any, key: str, allowed: Sequence[Any], *, error: type[Exception] = ValueError
) -> None:
    """Raise ``error("<key>: <value!r> is not one of [<allowed>]")`` unless ``value in allowed``."""
    require(value in allowed, key, f"{value!r} is not one of {list(allowed)}", error=error)


def invalid(name: str, rule: str, value: Any, *, error: type[Exception] = ValueError) -> Exception:
    """The error ``"<name> must be <rule>, got <value!r>"``, for the caller to raise."""
    return error(f"{name} must be {rule}, got {value!r}")


def check_int(value: Any, name: str, *, low: int | None = None, rule: str | None = None) -> int:
    """Check that ``value`` is an int (not a bool), ``>= low`` when given, and return it.

    ``rule`` words the requirement in the error (default ``"an int"`` / ``"an int >= <low>"``).
    """
    ok = isinstance(value, int) and not isinstance(value, bool)
    if ok and low is not None:
        ok = value >= low
    if not ok:
        if rule is None:
            rule = "an int" if low is None else f"an int >= {low}"
        raise invalid(name, rule, value)
    return value


def check_number(
    value: Any,
    name: str,
    *,
    low: float | None = None,
    high: float | None = None,
    low_open: bool = False,
) -> float:
    """Check that ``value`` is a finite real number in the given range and return it as float.

    The range is ``[low, high]``, or ``(low, high]`` with ``low_open``; a bound left None is open.
    """
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise invalid(name, "a real number", value)
    v = float(value)
    if not math.isfinite(v):
        raise invalid(name, "finite", value)
    if low is not None and (v <= low if low_open else v < low):
        raise invalid(name, f"> {low}" if low_open else f">= {low}", value)
    if high is not None and v > high:
        raise invalid(name, f"<= {high}", value)
    return v
