"""Final-answer extraction from model output: ``\\boxed{}``, GSM8K ``####``, choice letters, numbers.

``extract_answer(text, kind)`` returns the final answer of a response as a short string, or
``None`` when the response has none. Every rule runs in time linear in ``len(text)`` (no
backtracking regular expression is applied to the whole text), so a 100 kB response costs
milliseconds.

Kinds (registry ``ANSWER_KINDS``):

- ``"math"``: the content of the LAST ``\\boxed{...}`` / ``\\fbox{...}`` (balanced, nested braces
  allowed), or the brace-less form ``\\boxed 5`` (the next token). When that last box is never
  closed (a truncated response) the answer is ``None``: an earlier box is not used, because a
  model that reopened a box has withdrawn the earlier one (same rule as verl's
  ``last_boxed_only_string``).
- ``"gsm8k"``: the first non-empty line after the last ``####``, else the ``math`` rule.
  Thousands separators of a plain number are removed (``1,234`` -> ``1234``).
- ``"choice"``: one letter ``A``-``J``, taken from (in this order) the last box, the last
  "answer is (X)" / "answer: X", or a trailing "(X)".
- ``"number"``: the last number in the text (sign and decimals kept, thousands commas removed).

Cleaning applied to every extracted answer (``clean_answer``): ``$`` and ``\\$`` removed, a
``\\text{...}`` (or ``\\textbf``/``\\mathrm``/``\\mbox``) that wraps the WHOLE answer unwrapped,
trailing periods and surrounding spaces stripped; an empty result is ``None``. A ``\\text{}``
inside a larger expression (``10\\text{ cm}``) is kept on purpose: math-verify's own unit
normalisation removes it, whereas stripping it here would turn ``cm`` into the product ``c*m``.
"""

from __future__ import annotations

import re
from collections.abc import Callable

__all__ = ["ANSWER_KINDS", "clean_answer", "extract_answer", "last_boxed"]

BOX_COMMANDS = ("\\boxed", "\\fbox")
TEXT_WRAPPERS = ("\\text", "\\textbf", "\\textrm", "\\mathrm", "\\mbox", "\\textit")
GSM8K_MARKER = "####"
CHOICE_LETTERS = "ABCDEFGHIJ"
# Only this many trailing characters are examined for a trailing "(X)" choice.
TRAILING_CHOICE_WINDOW = 64

_NUMBER_RE = re.compile(
    r"(?:(?<![\w.)\]}])-)?(?:\d{1,3}(?:,\d{3})+(?:\.\d+)?|\d+(?:\.\d+)?|\.\d+)"
)
_PLAIN_NUMBER_RE = re.compile(r"-?(?:\d{1,3}(?:,\d{3})+|\d+)(?:\.\d+)?")
_ANSWER_IS_RE = re.compile(
    r"(?i:answer)(?:\s+(?i:is))?\s*[:\uff1a]?\s*\**\s*(?:\\text(?:bf)?\{)?\s*\(?([A-J])\)?(?![A-Za-z0-9])"
)
_TRAILING_CHOICE_RE = re.compile(r"\(([A-J])\)[\s.*$}]*\Z")
_LONE_CHOICE_RE = re.compile(r"\(?([A-Ja-j])(?:\)|\.|:|\s|\Z)")


def _match_brace(text: str, open_index: int) -> int:
    """Index of the ``}`` closing the ``{`` at ``open_index``, or -1 if it never closes.

    Escaped braces ``\\{`` / ``\\}`` do not count. Linear in the scanned length.
    """
    depth = 0
    i = open_index
    n = len(text)
    while i < n:
        c = text[i]
        if c == "\\":
            i += 2  # skip the escaped character (\{, \}, \\)
            continue
        if c == "{":
            depth += 1
        elif c == "}":
            depth -= 1
            if depth == 0:
                return i
        i += 1
    return -1


def last_boxed(text: str) -> str | None:
    """Raw content of the last ``\\boxed{...}`` / ``\\fbox{...}`` (or ``\\boxed X``), else None.

    Returns None when the last box is unbalanced (never closed) or there is no box.
    """
    start = -1
    command = ""
    for cmd in BOX_COMMANDS:
        pos = text.rfind(cmd)
        while pos != -1:
            # \boxed must not be a prefix of a longer command name (e.g. a user macro \boxedx).
            after = pos + len(cmd)
            if after < len(text) and text[after].isalpha():
                pos = text.rfind(cmd, 0, pos)
                continue
            break
        if pos > start:
            start, command = pos, cmd
    if start == -1:
        return None
    i = start + len(command)
    n = len(text)
    while i < n and text[i] in " \t":
        i += 1
    if i >= n:
        return None
    if text[i] == "{":
        close = _match_brace(text, i)
        if close == -1:
            return None
        return text[i + 1 : close]
    if i == start + len(command):
        return None  # "\boxed" directly followed by something that is not a brace or a space
    # Brace-less form "\boxed 5": the next token up to whitespace, '$' or a closing delimiter.
    j = i
    while j < n and not text[j].isspace() and text[j] not in "$}":
        j += 1
    return text[i:j] or None


def _unwrap_whole(answer: str) -> str:
    """Remove text wrappers (``\\text{...}`` etc.) and ``\\boxed{}`` enclosing the entire answer."""
    changed = True
    while changed:
        changed = False
        for cmd in (*TEXT_WRAPPERS, *BOX_COMMANDS):
            if answer.startswith(cmd + "{") or answer.startswith(cmd + " {"):
                brace = answer.index("{")
                close = _match_brace(answer, brace)
                if close == len(answer) - 1:
                    answer = answer[brace + 1 : close].strip()
                    changed = True
                    break
    return answer


def clean_answer(answer: str | None) -> str | None:
    """Strip ``$``, a whole-answer ``\\text{}`` wrapper, trailing periods and spaces; '' -> None."""
    if answer is None:
        return None
    answer = answer.replace("\\$", "").replace("$", "").strip()
    answer = _unwrap_whole(answer)
    answer = answer.rstrip(" .\t\n").lstrip()
    answer = _unwrap_whole(answer)
    return answer or None


def _strip_thousands(answer: str) -> str:
    """``1,234.5`` -> ``1234.5`` when the whole answer is a plain number; else unchanged."""
    if _PLAIN_NUMBER_RE.fullmatch(answer):
        return answer.replace(",", "")
    return answer


def _extract_math(text: str) -> str | None:
    return clean_answer(last_boxed(text))


def _extract_gsm8k(text: str) -> str | None:
    pos = text.rfind(GSM8K_MARKER)
    if pos != -1:
        for line in text[pos + len(GSM8K_MARKER) :].splitlines():
            answer = clean_answer(line)
            if answer is not None:
                return _strip_thousands(answer)
    answer = _extract_math(text)
    return None if answer is None else _strip_thousands(answer)


def _choice_from_box(content: str) -> str | None:
    content = clean_answer(content)
    if content is None:
        return None
    content = content.strip("*")
    m = _LONE_CHOICE_RE.match(content)
    if m is None:
        return None
    letter = m.group(1)
    # A lower-case letter only counts when it is the whole box (\boxed{b}), not a word ("b = 3").
    if letter.islower() and len(content.strip("()")) != 1:
        return None
    return letter.upper()


def _extract_choice(text: str) -> str | None:
    boxed = last_boxed(text)
    if boxed is not None:
        letter = _choice_from_box(boxed)
        if letter is not None:
            return letter
    last = None
    for m in _ANSWER_IS_RE.finditer(text):
        last = m
    if last is not None:
        return last.group(1)
    m = _TRAILING_CHOICE_RE.search(text[-TRAILING_CHOICE_WINDOW:])
    if m is not None:
        return m.group(1)
    return None


def _extract_number(text: str) -> str | None:
    last = None
    for m in _NUMBER_RE.finditer(text):
        last = m
    if last is None:
        return None
    return last.group(0).replace(",", "")


ANSWER_KINDS: dict[str, Callable[[str], str | None]] = {
    "math": _extract_math,
    "gsm8k": _extract_gsm8k,
    "choice": _extract_choice,
    "number": _extract_number,
}


def extract_answer(text: str, kind: str = "math") -> str | None:
    """Final answer of ``text`` by the rule of ``kind`` (see the module docstring), or None.

    Raises ``ValueError`` for an unknown ``kind`` (the message lists the valid kinds) and
    ``TypeError`` when ``text`` is not a string. Never raises on any string content.
    """
    try:
        rule = ANSWER_KINDS[kind]
    except (KeyError, TypeError):
        raise ValueError(
            f"extract_answer: unknown kind {kind!r}; valid kinds: {sorted(ANSWER_KINDS)}"
        ) from None
    if not isinstance(text, str):
        raise TypeError(f"extract_answer: text must be str, got {type(text).__name__}")
    return rule(text)
