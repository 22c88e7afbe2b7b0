"""Extraction tables for every answer kind, plus adversarial and linear-time inputs."""

from __future__ import annotations

import time

import pytest

from mgrpo.answers import ANSWER_KINDS, clean_answer, extract_answer, last_boxed

MATH_CASES = [
    ("So the answer is $\\boxed{42}$.", "42"),
    ("First \\boxed{1}, then corrected: \\boxed{2}", "2"),
    ("\\boxed{\\frac{1}{2}}", "\\frac{1}{2}"),
    ("\\boxed{\\frac{\\sqrt{3}}{2}}", "\\frac{\\sqrt{3}}{2}"),
    ("nested \\boxed{\\{1, \\{2\\}\\}} ok", "\\{1, \\{2\\}\\}"),
    ("\\boxed{\\begin{pmatrix} 1 & 2 \\\\ 3 & 4 \\end{pmatrix}}",
     "\\begin{pmatrix} 1 & 2 \\\\ 3 & 4 \\end{pmatrix}"),
    ("\\fbox{7}", "7"),
    ("The answer is $\\boxed 5$.", "5"),
    ("\\boxed {12}", "12"),
    ("\\boxed{\\text{Monday}}", "Monday"),
    ("\\boxed{\\text{(B)}}", "(B)"),
    ("\\boxed{10\\text{ cm}}", "10\\text{ cm}"),  # inner units stay for math-verify
    ("\\boxed{ 3.5. }", "3.5"),
    ("\\boxed{$x = 2$}", "x = 2"),
    ("\\boxed{\\$18.90}", "18.90"),
    ("\\boxed{\\boxed{9}}", "9"),
    ("\\boxed{}", None),
    ("no box here, the answer is 5", None),
    ("\\boxed{unclosed", None),
    ("\\boxed{1} and then a truncated \\boxed{2", None),
    ("\\boxedx{3}", None),
    ("", None),
]

GSM8K_CASES = [
    ("Natalia sold 48 + 24 = 72 clips.\n#### 72", "72"),
    ("#### 1,234", "1234"),
    ("#### $1,234.50", "1234.50"),
    ("first #### 3 then #### 4\nexplanation", "4"),
    ("####\n\n  18  \nmore", "18"),
    ("no marker but \\boxed{5}", "5"),
    ("#### \n", None),
    ("nothing at all", None),
]

CHOICE_CASES = [
    ("Therefore \\boxed{C}", "C"),
    ("\\boxed{(B)}", "B"),
    ("\\boxed{\\text{D}}", "D"),
    ("\\boxed{b}", "B"),
    ("\\boxed{A. 42}", "A"),
    ("The answer is (E).", "E"),
    ("the answer is J", "J"),
    ("Answer: C", "C"),
    ("**Answer:** (A)", "A"),
    ("I think the answer is B, no wait, the answer is D.", "D"),
    ("... so we pick (G)", "G"),
    ("The answer is Apple", None),
    ("the answer is K", None),
    ("\\boxed{x = 3}", None),
    ("no letter here", None),
]

NUMBER_CASES = [
    ("The total is 1,234 dollars.", "1234"),
    ("we get -3.5", "-3.5"),
    ("x-3 = 4 so x = 7.", "7"),
    ("1,234,567.89 is it", "1234567.89"),
    ("values 3, 4, 5", "5"),
    ("it costs $.75", ".75"),
    ("no digits", None),
    ("", None),
]


@pytest.mark.parametrize("text,expected", MATH_CASES)
def test_extract_math(text, expected):
    assert extract_answer(text) == expected
    assert extract_answer(text, kind="math") == expected


@pytest.mark.parametrize("text,expected", GSM8K_CASES)
def test_extract_gsm8k(text, expected):
    assert extract_answer(text, kind="gsm8k") == expected


@pytest.mark.parametrize("text,expected", CHOICE_CASES)
def test_extract_choice(text, expected):
    assert extract_answer(text, kind="choice") == expected


@pytest.mark.parametrize("text,expected", NUMBER_CASES)
def test_extract_number(text, expected):
    assert extract_answer(text, kind="number") == expected


def test_unknown_kind_lists_valid_kinds():
    with pytest.raises(ValueError, match="unknown kind 'latex'.*choice.*gsm8k.*math.*number"):
        extract_answer("\\boxed{1}", kind="latex")
    assert set(ANSWER_KINDS) == {"math", "gsm8k", "choice", "number"}


def test_non_string_text_is_a_type_error():
    with pytest.raises(TypeError, match="text must be str"):
        extract_answer(None)  # type: ignore[arg-type]


def test_clean_answer():
    assert clean_answer("  $\\text{ 5 }$. ") == "5"
    assert clean_answer("$$") is None
    assert clean_answer(None) is None
    assert last_boxed("a \\boxed{x}") == "x"


HUGE = 100_000

ADVERSARIAL_TEXTS = [
    "\\boxed{" * (HUGE // 7),                       # never closed, deeply nested
    "{" * HUGE + "\\boxed{1}",
    "\\boxed{" + "{" * HUGE + "}" * HUGE + "}",     # balanced, 100 kB deep
    "(A) " * (HUGE // 4),
    "answer " * (HUGE // 7),
    "1," * (HUGE // 2),
    "9" * HUGE,
    "-" * HUGE + "1",
    "#### " * (HUGE // 5),
    "\\" * HUGE,
    "\ud800" * 1000 + "\\boxed{\udfff}",           # lone surrogates (invalid UTF-8)
    "\x00" * HUGE,
]


@pytest.mark.parametrize("kind", sorted(ANSWER_KINDS))
def test_adversarial_extraction_is_fast(kind):
    start = time.monotonic()
    for text in ADVERSARIAL_TEXTS:
        result = extract_answer(text, kind=kind)
        assert result is None or isinstance(result, str)
    # 12 texts of ~100 kB each; linear scans take milliseconds, a quadratic regex minutes.
    assert time.monotonic() - start < 20.0


def test_deeply_nested_balanced_box_is_returned_whole():
    text = "\\boxed{" + "{" * 1000 + "1" + "}" * 1000 + "}"
    assert extract_answer(text) == "{" * 1000 + "1" + "}" * 1000
    assert extract_answer("\\boxed{\ud800}") == "\ud800"
