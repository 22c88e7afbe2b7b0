"""Answer noise for the lab SFT data: worked solutions with one random arithmetic slip.

A clean worked solution (`mgrpo.data.arithmetic.worked_solution`) is a chain of steps
``a op b = r`` ending in ``\\boxed{value}``. A slipped solution picks one step k of the
carried chain (the ``+``/``-`` steps that carry the running value; the last step when there
is none), writes its result as r_k + d with d uniform in {-noise_max..noise_max} \\ {0},
and computes every later step and the boxed answer from the wrong value, as a person who
slipped once would. Trained on such data, a model's errors are random per sample (a slip
at a random step by a random amount) rather than one fixed wrong answer per problem, which
is what a majority vote can correct. Not from the paper: a device of the lab world.
"""

from __future__ import annotations

import random

from mgrpo.data.arithmetic import ANSWER_PREFIX, STEP_SEPARATOR, solution_steps
from mgrpo.data.datasets import PromptRecord


def _apply(a: int, op: str, b: int) -> int:
    return a + b if op == "+" else a - b if op == "-" else a * b


def slipped_solution(record: PromptRecord, rng: random.Random, noise_max: int) -> str:
    """The worked solution of `record` with one slip drawn from `rng` (see the module doc).

    A question without steps (a single operand) has its boxed value slipped. Raises
    ValueError when `noise_max` < 1.
    """
    if noise_max < 1:
        raise ValueError(f"slipped_solution: noise_max must be >= 1, got {noise_max}")
    steps = solution_steps(record.question)
    delta = rng.randint(1, noise_max) * rng.choice((-1, 1))
    if not steps:
        return f"\\boxed{{{int(record.question) + delta}}}"
    carried = [i for i, (_, op, _, _) in enumerate(steps) if op != "*"]
    # the carried chain starts after the products: index of its first step
    first = carried[0] if carried else len(steps) - 1
    k = rng.randint(first, len(steps) - 1)
    out: list[tuple[int, str, int, int]] = list(steps[:k])
    a, op, b, result = steps[k]
    value = result + delta
    out.append((a, op, b, value))
    for _, op_next, b_next, _ in steps[k + 1 :]:
        nxt = _apply(value, op_next, b_next)
        out.append((value, op_next, b_next, nxt))
        value = nxt
    chain = STEP_SEPARATOR.join(f"{x}{o}{y}={r}" for x, o, y, r in out)
    return chain + ANSWER_PREFIX + f"\\boxed{{{value}}}"
