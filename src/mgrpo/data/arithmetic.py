"""Synthetic integer arithmetic: seeded problem generator and short worked solutions.

This is the task of the embedded lab world (`mgrpo.lab`): a question is a flat
expression such as ``"13+4-7"`` over non-negative integer operands, its answer the exact
integer value as a string (``"10"``), and its worked solution a short chain of partial
results ending in a boxed answer: ``"13+4=17,17-7=10.\\boxed{10}"``. Every character is a
token for the lab's character tokenizer, so the text is deliberately terse.

Evaluation order follows ordinary precedence: every ``*`` is reduced first (left to right),
then ``+``/``-`` left to right; the worked solution lists the steps in exactly that order.
Not from the paper: the paper trains on MATH; this task exists so label-free RL can be
demonstrated on a CPU in minutes.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Collection

from mgrpo.checks import check_int, invalid
from mgrpo.data.datasets import PromptRecord

VALID_OPS = "+-*"
STEP_SEPARATOR = ","  # between the partial results of a worked solution
ANSWER_PREFIX = "."  # between the last step and the boxed answer
ID_PREFIX = "arith"
# a seeded generator that must produce `n` unique problems gives up after this many draws per problem
MAX_DRAWS_PER_PROBLEM = 200


def _validate(n: int, min_operands: int, max_operands: int, min_value: int, max_value: int,
              ops: str) -> None:
    check_int(n, "n", low=0, rule="a non-negative int")
    check_int(min_operands, "min_operands", low=1)
    check_int(max_operands, "max_operands", low=min_operands, rule=f"an int >= min_operands={min_operands}")
    check_int(min_value, "min_value", low=0, rule="a non-negative int")
    check_int(max_value, "max_value", low=min_value, rule=f"an int >= min_value={min_value}")
    if not isinstance(ops, str) or not ops or any(op not in VALID_OPS for op in ops):
        raise invalid("ops", f"a non-empty string of characters from {VALID_OPS!r}", ops)


def parse_expression(question: str) -> tuple[list[int], list[str]]:
    """Split ``"13+4*2"`` into operands ``[13, 4, 2]`` and operators ``["+", "*"]``.

    Accepts only non-negative integer literals joined by operators from `VALID_OPS`, no
    spaces; anything else raises ValueError naming the question.
    """
    operands: list[int] = []
    operators: list[str] = []
    digits = ""
    for ch in question:
        if ch.isdigit():
            digits += ch
        elif ch in VALID_OPS and digits:
            operands.append(int(digits))
            operators.append(ch)
            digits = ""
        else:
            raise ValueError(f"not an arithmetic question: {question!r} (unexpected {ch!r})")
    if not digits:
        raise ValueError(f"not an arithmetic question: {question!r} (ends without an operand)")
    operands.append(int(digits))
    return operands, operators


def _apply(a: int, op: str, b: int) -> int:
    if op == "+":
        return a + b
    if op == "-":
        return a - b
    return a * b


def solution_steps(question: str) -> list[tuple[int, str, int, int]]:
    """The reduction steps ``(a, op, b, result)`` of `question`, in worked-solution order.

    All ``*`` first (leftmost first), then ``+``/``-`` left to right. A single operand
    has no steps.
    """
    operands, operators = parse_expression(question)
    steps: list[tuple[int, str, int, int]] = []
    while "*" in operators:
        i = operators.index("*")
        result = operands[i] * operands[i + 1]
        steps.append((operands[i], "*", operands[i + 1], result))
        operands[i : i + 2] = [result]
        del operators[i]
    value = operands[0]
    for op, b in zip(operators, operands[1:]):
        result = _apply(value, op, b)
        steps.append((value, op, b, result))
        value = result
    return steps


def evaluate_expression(question: str) -> int:
    """Exact integer value of `question` with ordinary precedence (``*`` before ``+``/``-``)."""
    operands, operators = parse_expression(question)
    # sum of signed products: each +/- starts a new term, * extends the current one
    total, term, sign = 0, operands[0], 1
    for op, b in zip(operators, operands[1:]):
        if op == "*":
            term *= b
        else:
            total += sign * term
            term, sign = b, (1 if op == "+" else -1)
    return total + sign * term


def rewrite_expression(question: str) -> str:
    """A synthetic rephrasing of `question` with the same value (co-rewarding-i's twin in the
    lab and arithmetic tasks): the expression as a sum of signed products, each product's
    factors reversed (``*`` commutes), the positive terms first in reverse order, then the
    negative ones in reverse order (``+`` commutes): ``"7-3+9-1"`` -> ``"9+7-1-3"``,
    ``"2*3+4"`` -> ``"4+3*2"``. Deterministic; an expression that is its own rewrite (``"4-2"``,
    a single operand) comes back unchanged. The first term of a question is positive, so the
    rewrite never needs a unary minus. Not from the paper: Co-rewarding-I rephrases questions
    with an LLM; this rewrite only moves operands.
    """
    operands, operators = parse_expression(question)
    terms: list[tuple[int, list[int]]] = [(1, [operands[0]])]  # (sign, factors)
    for op, b in zip(operators, operands[1:]):
        if op == "*":
            terms[-1][1].append(b)
        else:
            terms.append((1 if op == "+" else -1, [b]))
    positive = [f for sign, f in reversed(terms) if sign > 0]
    negative = [f for sign, f in reversed(terms) if sign < 0]

    def product(factors: list[int]) -> str:
        return "*".join(str(v) for v in reversed(factors))

    return ("+".join(product(f) for f in positive)
            + "".join("-" + product(f) for f in negative))


def worked_solution(record: PromptRecord) -> str:
    """Short worked solution of an arithmetic record, ending in ``\\boxed{N}``.

    ``"3+4-2"`` -> ``"3+4=7,7-2=5.\\boxed{5}"``; a single operand ``"5"`` -> ``"\\boxed{5}"``.
    Raises ValueError if the record's question is not an arithmetic expression or its
    stored answer disagrees with the exact value.
    """
    steps = solution_steps(record.question)
    value = evaluate_expression(record.question)
    if record.answer is not None and record.answer.strip() != str(value):
        raise ValueError(
            f"record {record.id!r}: stored answer {record.answer!r} != exact value {value}"
        )
    chain = STEP_SEPARATOR.join(f"{a}{op}{b}={r}" for a, op, b, r in steps)
    return (chain + ANSWER_PREFIX if chain else "") + f"\\boxed{{{value}}}"


def make_problems(
    n: int,
    *,
    seed: int,
    min_operands: int = 2,
    max_operands: int = 2,
    max_value: int = 9,
    ops: str = "+-",
    min_value: int = 0,
    unique: bool = False,
    exclude: Collection[str] = (),
    accept: Callable[[str], bool] | None = None,
    id_prefix: str = ID_PREFIX,
) -> list[PromptRecord]:
    """`n` seeded arithmetic problems as PromptRecords with exact integer answers.

    Each problem draws an operand count uniformly from [min_operands, max_operands], each
    operand uniformly from [min_value, max_value] and each operator uniformly from `ops`.
    Ids are ``f"{id_prefix}-{seed}-{i}"``. The same arguments always give the same list
    (a private `random.Random(seed)`, no global state).

    `unique=True` never repeats a question; `exclude` holds questions that must not be
    drawn (e.g. another split's); `accept(question) -> bool`, if given, rejects draws for
    which it is False (e.g. a held-out split). If the distribution is too small to supply `n` such
    problems, raises ValueError instead of looping forever.
    """
    _validate(n, min_operands, max_operands, min_value, max_value, ops)
    rng = random.Random(seed)
    seen: set[str] = set(exclude)
    records: list[PromptRecord] = []
    draws = 0
    while len(records) < n:
        draws += 1
        if draws > MAX_DRAWS_PER_PROBLEM * max(n, 1):
            raise ValueError(
                f"could not draw {n} distinct problems (got {len(records)}) with "
                f"operands {min_operands}..{max_operands}, values {min_value}..{max_value}, "
                f"ops {ops!r}; widen the distribution or lower n"
            )
        count = rng.randint(min_operands, max_operands)
        values = [rng.randint(min_value, max_value) for _ in range(count)]
        operators = [rng.choice(ops) for _ in range(count - 1)]
        question = str(values[0]) + "".join(f"{op}{v}" for op, v in zip(operators, values[1:]))
        if (unique or exclude) and question in seen:
            continue
        if accept is not None and not accept(question):
            continue
        if unique:
            seen.add(question)
        answer = str(evaluate_expression(question))
        records.append(PromptRecord(id=f"{id_prefix}-{seed}-{len(records)}", question=question,
                                    answer=answer))
    return records
