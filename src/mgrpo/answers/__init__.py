"""Final answers: extraction from model output and equivalence checking.

``extract_answer(text, kind)`` (kinds: math, gsm8k, choice, number) finds the final answer;
``is_equivalent(a, b)`` / ``AnswerChecker`` decide whether two answers are the same, by an
exact match after conservative normalisation and otherwise by math-verify in worker
processes with a hard timeout (safe from any thread). See ``extract``, ``normalize`` and
``checker`` for the rules.
"""

from .checker import AnswerChecker, WorkerStartError, default_checker, is_equivalent
from .equivalence import Equivalence
from .extract import ANSWER_KINDS, clean_answer, extract_answer, last_boxed
from .normalize import fast_compare, normalize_answer

__all__ = [
    "ANSWER_KINDS",
    "AnswerChecker",
    "Equivalence",
    "WorkerStartError",
    "clean_answer",
    "default_checker",
    "extract_answer",
    "fast_compare",
    "is_equivalent",
    "last_boxed",
    "normalize_answer",
]
