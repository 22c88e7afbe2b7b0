"""Row adapters of the benchmark registry: how one dataset row becomes a prompt.

An adapter maps ``(row, where)`` to ``(question, reference, meta)`` (:data:`Adapted`);
``where`` names the file and row for errors. :data:`ADAPTERS` is the table the registry in
:mod:`mgrpo.data.benchmarks` names adapters from. Multiple-choice rows keep their options
in ``meta`` (lettered and shuffled later by the registry); code rows keep the whole row for
the sandbox graders.
"""

from __future__ import annotations

import json
import string
from collections.abc import Callable, Mapping
from typing import Any

from mgrpo.answers import extract_answer
from mgrpo.data.datasets import DatasetError, field_text, gsm8k_final_answer

CHOICE_LETTERS = string.ascii_uppercase[:10]  # A..J (MMLU-Pro has up to 10 options)
MBPP_INSTRUCTION = (
    "Please provide a self-contained Python script that solves the following problem "
    "in a markdown code block:"
)
LCB_INSTRUCTION = (
    "You will be given a question (problem specification) and will generate a correct "
    "Python program that matches the specification and passes all tests."
)
LCB_STDIN_FORMAT = (
    "Read the inputs from stdin, solve the problem and write the answer to stdout (do not "
    "directly test on the sample inputs). Enclose your code within delimiters as follows.\n"
    "```python\n# YOUR CODE HERE\n```"
)
LCB_STARTER_FORMAT = (
    "You will use the following starter code to write the solution to the problem and "
    "enclose your code within delimiters.\n```python\n{starter}\n```"
)

Adapted = tuple[str, "str | None", dict[str, Any]]  # (question, reference, meta)


def _first_key(row: Mapping[str, Any], keys: tuple[str, ...], where: str, role: str) -> str:
    for key in keys:
        if key in row:
            return key
    raise DatasetError(
        f"{where}: missing {role} column; expected one of {list(keys)}, row has {sorted(row)}"
    )


def _question(row: Mapping[str, Any], keys: tuple[str, ...], where: str) -> str:
    """The prompt text from the first of `keys` that `row` has."""
    return field_text(row, _first_key(row, keys, where, "question"), where, role="prompt")


def _adapt_math(row: Mapping[str, Any], where: str) -> Adapted:
    question = _question(row, ("problem", "question", "prompt"), where)
    answer = field_text(row, "answer", where, role="answer")
    return question, answer, {}


def _adapt_gsm8k(row: Mapping[str, Any], where: str) -> Adapted:
    question = _question(row, ("question", "problem"), where)
    return question, gsm8k_final_answer(field_text(row, "answer", where, role="answer")), {}


def _adapt_math_train(row: Mapping[str, Any], where: str) -> Adapted:
    question = _question(row, ("problem", "question"), where)
    if "answer" in row:
        return question, field_text(row, "answer", where, role="answer"), {}
    solution = field_text(
        row, _first_key(row, ("solution",), where, "answer or solution"), where, role="answer"
    )

    answer = extract_answer(solution, "math")
    if answer is None:
        raise DatasetError(f"{where}: no \\boxed{{}} final answer in the 'solution' column")
    return question, answer, {}


def _parse_options(value: Any, where: str) -> list[str]:
    if isinstance(value, str):  # CSV cells hold the list as JSON
        try:
            value = json.loads(value)
        except json.JSONDecodeError:
            raise DatasetError(f"{where}: 'options' must be a list or a JSON list string") from None
    if not isinstance(value, (list, tuple)) or not all(
        isinstance(o, (str, int, float)) for o in value
    ):
        raise DatasetError(
            f"{where}: 'options' must be a list of strings, got {type(value).__name__}"
        )
    options = [str(o).strip() for o in value]
    if not 2 <= len(options) <= len(CHOICE_LETTERS):
        raise DatasetError(f"{where}: {len(options)} options; need 2..{len(CHOICE_LETTERS)}")
    return options


def _correct_index(row: Mapping[str, Any], options: list[str], where: str) -> int:
    """0-based index of the correct option: `answer_index` (int), else `answer` read as an
    int index, a letter (A..), the exact text of an option, or a digit string index, in
    that order."""
    if (
        "answer_index" in row
        and isinstance(row["answer_index"], int)
        and not isinstance(row["answer_index"], bool)
    ):
        index = row["answer_index"]
    else:
        answer = row.get("answer")
        if isinstance(answer, int) and not isinstance(answer, bool):
            index = answer
        elif (
            isinstance(answer, str)
            and len(answer.strip()) == 1
            and answer.strip().upper() in CHOICE_LETTERS[: len(options)]
        ):
            index = CHOICE_LETTERS.index(answer.strip().upper())
        elif isinstance(answer, str) and answer.strip() in options:
            index = options.index(answer.strip())
        elif isinstance(answer, str) and answer.strip().isdigit():
            index = int(answer.strip())
        else:
            raise DatasetError(
                f"{where}: 'answer' must be a letter, a 0-based index or the text of an option, got {answer!r}"
            )
    if not 0 <= index < len(options):
        raise DatasetError(f"{where}: answer index {index} out of range for {len(options)} options")
    return index


def _adapt_choice(row: Mapping[str, Any], where: str) -> Adapted:
    if "Correct Answer" in row:  # GPQA's own columns
        question = field_text(row, "Question", where, role="prompt")
        options = [field_text(row, "Correct Answer", where, role="answer").strip()]
        options += [
            field_text(row, f"Incorrect Answer {i}", where, role="answer").strip()
            for i in (1, 2, 3)
        ]
        correct = 0
    else:
        question = _question(row, ("question", "Question", "problem"), where)
        options = _parse_options(row.get("options", row.get("choices")), where)
        correct = _correct_index(row, options, where)
    return question, None, {"options": options, "correct_index": correct}


def _adapt_mbpp_plus(row: Mapping[str, Any], where: str) -> Adapted:
    prompt = field_text(row, "prompt", where, role="prompt")
    question = f"{MBPP_INSTRUCTION}\n```\n{prompt.strip()}\n```"
    return question, None, {"row": dict(row), "grader": "mbpp_plus"}


def _adapt_livecodebench(row: Mapping[str, Any], where: str) -> Adapted:
    content = _question(row, ("question_content", "question", "prompt"), where)
    starter = row.get("starter_code") or ""
    fmt = (
        LCB_STARTER_FORMAT.format(starter=starter.strip()) if starter.strip() else LCB_STDIN_FORMAT
    )
    question = f"{LCB_INSTRUCTION}\n\nQuestion: {content.strip()}\n\n{fmt}"
    return question, None, {"row": dict(row), "grader": "livecodebench"}


def _adapt_code(row: Mapping[str, Any], where: str) -> Adapted:
    """Custom code file: MBPP+-style rows (task_id/entry_point) or LiveCodeBench-style rows."""
    if "entry_point" in row:
        return _adapt_mbpp_plus(row, where)
    return _adapt_livecodebench(row, where)


ADAPTERS: dict[str, Callable[[Mapping[str, Any], str], Adapted]] = {
    "math": _adapt_math,
    "gsm8k": _adapt_gsm8k,
    "math_train": _adapt_math_train,
    "choice": _adapt_choice,
    "mbpp_plus": _adapt_mbpp_plus,
    "livecodebench": _adapt_livecodebench,
    "code": _adapt_code,
}
