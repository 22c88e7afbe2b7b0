"""Conservative answer normalisation and the exact-match fast path of ``is_equivalent``.

``normalize_answer`` rewrites only spellings that denote the SAME LaTeX object, so that two
answers whose normal forms are equal are equivalent for sure:

- ``$``, ``\\$``, ``\\left``/``\\right`` (``\\left.`` too), ``\\displaystyle``, spacing commands
  (``\\, \\; \\: \\! \\quad \\qquad \\ ~``) and insignificant whitespace are removed (a space that
  ends a control word before a letter, ``\\pi r``, is kept, so ``\\pi r`` != ``\\pir``);
- ``\\dfrac``/``\\tfrac`` -> ``\\frac``, ``\\dbinom``/``\\tbinom`` -> ``\\binom``;
  single-token arguments get braces (``\\frac12`` -> ``\\frac{1}{2}``, ``\\sqrt2`` -> ``\\sqrt{2}``);
- a whole-answer ``\\text{}``/``\\boxed{}`` wrapper and trailing periods are removed;
- a plain decimal number is written canonically (``2.0`` -> ``2``, ``1,000`` -> ``1000``,
  ``-0`` -> ``0``, ``.5`` -> ``0.5``).

``fast_compare(a, b)`` returns True when the normal forms are equal, False when both are plain
integers with different values or plain decimals at least 1e-6 apart (math-verify would say
the same, slower: it rounds floats to 6 places before comparing), and None otherwise:
None means "ask math-verify". Nothing else is ever decided here: degrees, percentages, units,
fractions vs decimals, ordering inside sets all go to math-verify.
"""

from __future__ import annotations

import re
from decimal import Decimal, InvalidOperation

from .extract import clean_answer

__all__ = ["fast_compare", "normalize_answer"]

_REMOVE = ("\\displaystyle", "\\left.", "\\right.", "\\left", "\\right")
_SPACING_RE = re.compile(r"\\(?:[,;:! ]|q?quad(?![A-Za-z]))|~")
_RENAME = (("\\dfrac", "\\frac"), ("\\tfrac", "\\frac"), ("\\dbinom", "\\binom"),
           ("\\tbinom", "\\binom"))
_TWO_ARG_RE = re.compile(r"\\(frac|binom)(?![A-Za-z])\s*([0-9A-Za-z]|\{[^{}]*\})\s*([0-9A-Za-z]|\{[^{}]*\})")
_ONE_ARG_RE = re.compile(r"\\sqrt(?![A-Za-z])\s*([0-9A-Za-z])")
_WS_RE = re.compile(r"\s+")
_CONTROL_WORD_TAIL_RE = re.compile(r"\\[A-Za-z]+\Z")
_NUMBER_RE = re.compile(r"[-+]?(?:\d{1,3}(?:,\d{3})+|\d+)?(?:\.\d+)?")
_INTEGER_RE = re.compile(r"-?\d+")
_DECIMAL_RE = re.compile(r"-?\d+(\.\d+)?")  # canonical form: no "+", no leading "."
_MIN_FLOAT_GAP = Decimal("1e-6")  # math-verify's float_rounding = 6 decimal places
# Longest control word we look back for when deciding whether a space is significant.
_CONTROL_WORD_LOOKBACK = 32


def _brace(arg: str) -> str:
    return arg if arg.startswith("{") else "{" + arg + "}"


def _drop_whitespace(s: str) -> str:
    """Remove whitespace, keeping one space where it ends a control word before a letter."""

    def repl(m: re.Match[str]) -> str:
        before = s[max(0, m.start() - _CONTROL_WORD_LOOKBACK) : m.start()]
        nxt = s[m.end() : m.end() + 1]
        if nxt.isalpha() and _CONTROL_WORD_TAIL_RE.search(before):
            return " "
        return ""

    return _WS_RE.sub(repl, s)


def _canonical_number(s: str) -> str | None:
    """Canonical decimal string of a plain number (``1,000.50`` -> ``1000.5``), else None."""
    if not s or not _NUMBER_RE.fullmatch(s) or not any(ch.isdigit() for ch in s):
        return None
    try:
        value = Decimal(s.replace(",", ""))
    except InvalidOperation:  # pragma: no cover - the regex admits only valid decimals
        return None
    if value == 0:
        return "0"
    text = format(value.normalize(), "f")
    return text


def normalize_answer(answer: str) -> str:
    """Canonical spelling of an answer for exact comparison (see the module docstring)."""
    s = clean_answer(answer) or ""
    for token in _REMOVE:
        s = s.replace(token, "")
    s = _SPACING_RE.sub(" ", s)
    for old, new in _RENAME:
        s = s.replace(old, new)
    s = _TWO_ARG_RE.sub(lambda m: f"\\{m.group(1)}{_brace(m.group(2))}{_brace(m.group(3))}", s)
    s = _ONE_ARG_RE.sub(lambda m: f"\\sqrt{{{m.group(1)}}}", s)
    spaced_comma = ", " in s
    s = _drop_whitespace(s)
    s = s.rstrip(".")
    # "1, 000" is a list, not a thousands-separated number: leave it to math-verify.
    number = None if spaced_comma else _canonical_number(s)
    return number if number is not None else s


def fast_compare(a: str, b: str) -> bool | None:
    """True if surely equivalent, False if surely not, else None (ask math-verify).

    False is returned for two different canonical integers and when either answer is empty.
    """
    na, nb = normalize_answer(a), normalize_answer(b)
    if not na or not nb:
        return False  # an empty answer is no answer
    if na == nb:
        return True
    if _INTEGER_RE.fullmatch(na) and _INTEGER_RE.fullmatch(nb):
        return False  # canonical integers that differ as strings differ in value
    # "0,111" may be a decimal comma (math-verify reads 0.111), so commas stay undecided
    if "," not in a + b and _surely_different_decimals(na, nb):
        return False
    return None


def _surely_different_decimals(na: str, nb: str) -> bool:
    """Two canonical decimals math-verify cannot call equal: it compares a float with
    ``round(a, 6) == round(b, 6)``, and values at least 1e-6 apart never share a rounding
    bucket. Only short numerals (<= 12 significant digits, exact in its 15-digit floats)."""
    if not (_DECIMAL_RE.fullmatch(na) and _DECIMAL_RE.fullmatch(nb)):
        return False
    if max(len(x.lstrip("-").replace(".", "").lstrip("0")) for x in (na, nb)) > 12:
        return False
    return abs(Decimal(na) - Decimal(nb)) >= _MIN_FLOAT_GAP
