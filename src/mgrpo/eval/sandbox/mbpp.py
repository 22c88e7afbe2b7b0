"""MBPP+ grading (EvalPlus semantics) on top of the sandbox.

``grade_mbpp_plus(response, problem)`` takes one row of the vendored ``mbppplus.jsonl``
(fields task_id, prompt, entry_point, canonical_solution, base_input, plus_input, atol,
contract, assertion), extracts the program from the response (``extract_code``) and runs
it on base_input + plus_input inside the sandbox. Expected outputs come from running the
canonical solution (``prompt + canonical_solution``) in the sandbox too, once per task
per process (cached by task_id and a hash of the row).

Comparison, ported from EvalPlus (``evalplus/eval/__init__.py::check_output`` and
``_special_oracle.py``, MBPP+ v0.2.0): exact ``out == exp``; special oracles for
``are_equivalent`` (Mbpp/164, always true), ``sum_div`` (Mbpp/295, or 0),
``surface_Area`` (Mbpp/581), ``digit_distance_nums`` (Mbpp/558), set equality for 8 tasks
and "returned something" for 3; then, when not exact and a tolerance applies (the row's
``atol``, or 1e-6 when the expected value is float-shaped), same type and length and
``numpy.allclose(out, exp, rtol=1e-7, atol)``. Inputs are rebuilt from JSON with
EvalPlus's task-id table (tuples, sets, complex). All-or-nothing: every base and plus
test must pass.

Departures from EvalPlus: per-test limits are CPU seconds (``max(1.0, 4 x canonical CPU
time)``, EvalPlus uses wall time with the same floor and factor) so host contention
cannot fail a correct program; outputs are compared in the parent on decoded values
(not in the child), so an object with a rigged ``__eq__`` cannot pass; the whole run
has a CPU budget (the sum of the per-test limits + slack, RLIMIT_CPU) and a wall-clock
backstop against programs that block or sleep (``timeout_s``; by default
``clamp(WALL_FACTOR x CPU budget, 60 s, 600 s)``, generous because a loaded host can
give a run a small share of a core).
"""

from __future__ import annotations

import hashlib
import json
import math
import threading
from dataclasses import dataclass

import numpy as np

from mgrpo.data.datasets import vendored_path
from mgrpo.eval.sandbox import _harness
from mgrpo.eval.sandbox.common import CodeVerdict, extract_code, grade_outcome, run_harness
from mgrpo.eval.sandbox.runner import SandboxError

MIN_TIMEOUT_S = 60.0  # wall backstop bounds (see module doc)
MAX_TIMEOUT_S = 600.0
WALL_FACTOR = 3.0
CPU_SLACK_S = 5.0  # module load + harness overhead on top of the per-test limits
DEFAULT_MEMORY_MB = 4096  # EvalPlus default (EVALPLUS_MAX_MEMORY_BYTES)
MIN_TEST_CPU_S = 1.0  # EvalPlus DEFAULT_MIN_TIME_LIMIT
GT_TIME_FACTOR = 4.0  # EvalPlus DEFAULT_GT_TIME_LIMIT_FACTOR
FLOAT_ATOL = 1e-6  # enforced when atol == 0 and the expected value is float-shaped
ALLCLOSE_RTOL = 1e-7
REFERENCE_TIMEOUT_S = 600.0
REQUIRED_FIELDS = (
    "task_id",
    "prompt",
    "entry_point",
    "canonical_solution",
    "base_input",
    "plus_input",
    "atol",
)
OUTPUT_NOT_NONE_TASKS = frozenset({"check_str", "text_match_three", "text_starta_endb"})
OUTPUT_SET_EQ_TASKS = frozenset(
    {
        "similar_elements",
        "find_char_long",
        "common_in_nested_lists",
        "extract_singly",
        "larg_nnum",
        "intersection_array",
        "find_dissimilar",
        "Diff",
    }
)


@dataclass(frozen=True)
class _Reference:
    inputs: list  # deserialized base + plus inputs
    expected: list  # decoded canonical outputs (bool for OUTPUT_NOT_NONE_TASKS)
    limits: list[float]  # per-test CPU seconds


_CACHE: dict[tuple[str, str], _Reference] = {}
_CACHE_LOCK = threading.Lock()
_KEY_LOCKS: dict[tuple[str, str], threading.Lock] = {}


def load_mbpp_plus() -> list[dict]:
    """All 378 rows of ``mbppplus.jsonl`` (in file order; fetched on first use,
    `mgrpo.data.fetched`)."""
    text = vendored_path("mbppplus").read_text("utf-8")
    return [json.loads(line) for line in text.splitlines() if line.strip()]


def _surface_area(base_edge, height):
    slant = math.sqrt((base_edge / 2) ** 2 + height**2)
    return round(base_edge**2 + 4 * (base_edge * slant) / 2)


def _digit_distance_nums(num1, num2):
    a, b = str(num1), str(num2)
    n = max(len(a), len(b))
    return sum(abs(int(x) - int(y)) for x, y in zip(a.zfill(n), b.zfill(n), strict=True))


def is_floats(x) -> bool:
    """EvalPlus ``is_floats``: a float, or a non-empty list/tuple of only floats."""
    if isinstance(x, float):
        return True
    if isinstance(x, (list, tuple)) and x:
        return all(isinstance(i, float) for i in x)
    return False


def check_output(inp, out, exp, atol: float, entry_point: str) -> bool:
    """EvalPlus ``check_output`` for MBPP on decoded values (see module doc).

    A :class:`~mgrpo.eval.sandbox._harness.Digest` (an output too large to send) matches only
    an identical digest.
    """
    if isinstance(out, _harness.Digest) or isinstance(exp, _harness.Digest):
        return out == exp
    try:
        exact = bool(out == exp)
        if entry_point == "are_equivalent":
            exact = True
        elif entry_point == "sum_div":
            exact = exact or out == 0
        elif entry_point == "surface_Area":
            exact = exact or abs(out - _surface_area(*inp)) <= atol
        elif entry_point == "digit_distance_nums":
            exact = exact or out == _digit_distance_nums(*inp)
        elif entry_point in OUTPUT_SET_EQ_TASKS:
            exact = set(out) == set(exp)
        elif entry_point in OUTPUT_NOT_NONE_TASKS:
            exact = out == exp if isinstance(out, bool) else exp == (out is not None)
    except (TypeError, ValueError, ArithmeticError, RecursionError):
        exact = False
    if atol == 0 and is_floats(exp):
        atol = FLOAT_ATOL
    if not exact and atol != 0:
        if type(out) is not type(exp):
            return False
        if isinstance(exp, (list, tuple)) and len(out) != len(exp):
            return False
        try:
            return bool(np.allclose(out, exp, rtol=ALLCLOSE_RTOL, atol=atol))
        except (TypeError, ValueError, ArithmeticError, RecursionError):
            return False
    return bool(exact)


def _validate(problem: dict) -> None:
    if not isinstance(problem, dict):
        raise ValueError(f"problem must be an MBPP+ row (dict), got {type(problem).__name__}")
    missing = [k for k in REQUIRED_FIELDS if k not in problem]
    if missing:
        raise ValueError(f"MBPP+ problem {problem.get('task_id', '?')!r} lacks fields {missing}")


def _reference(problem: dict, memory_mb: int) -> _Reference:
    """Canonical outputs + per-test limits for ``problem`` (computed once, in the sandbox)."""
    raw = json.dumps([problem["base_input"], problem["plus_input"]], sort_keys=True)
    key = (str(problem["task_id"]), hashlib.sha256(raw.encode()).hexdigest())
    with _CACHE_LOCK:
        hit = _CACHE.get(key)
        key_lock = _KEY_LOCKS.setdefault(key, threading.Lock())
    if hit is not None:
        return hit
    with key_lock:  # concurrent graders of one task wait for a single reference run
        with _CACHE_LOCK:
            hit = _CACHE.get(key)
        if hit is not None:
            return hit
        ref = _compute_reference(problem, memory_mb)
        with _CACHE_LOCK:
            _CACHE[key] = ref
        return ref


def _compute_reference(problem: dict, memory_mb: int) -> _Reference:
    tests = list(problem["base_input"]) + list(problem["plus_input"])
    code = problem["prompt"] + problem["canonical_solution"]
    outcome = run_harness(
        code,
        mode="call",
        entry=problem["entry_point"],
        tests=tests,
        limits=[REFERENCE_TIMEOUT_S] * len(tests),
        timeout_s=REFERENCE_TIMEOUT_S,
        memory_mb=max(memory_mb, DEFAULT_MEMORY_MB),
        task_id=str(problem["task_id"]),
    )
    bad = [i for i in range(len(tests)) if "out" not in outcome.records.get(i, {})]
    if outcome.load_error or bad:
        first = outcome.records.get(bad[0], {}) if bad else {}
        raise SandboxError(
            f"MBPP+ {problem['task_id']}: canonical solution failed "
            f"({outcome.load_error or first.get('exc', outcome.run.status)}); "
            f"{len(bad)} of {len(tests)} inputs without output"
        )
    expected, limits = [], []
    for i in range(len(tests)):
        rec = outcome.records[i]
        value = _harness.decode(rec["out"])
        if problem["entry_point"] in OUTPUT_NOT_NONE_TASKS:
            value = value is not None
        expected.append(value)
        limits.append(max(MIN_TEST_CPU_S, GT_TIME_FACTOR * float(rec.get("cpu", 0.0))))
    inputs = _harness.mbpp_deserialize_inputs(problem["task_id"], tests)
    return _Reference(inputs=inputs, expected=expected, limits=limits)


def grade_mbpp_plus(
    response: str,
    problem: dict,
    *,
    timeout_s: float | None = None,
    memory_mb: int = DEFAULT_MEMORY_MB,
) -> CodeVerdict:
    """Grade a model response on one MBPP+ problem (all base + plus tests must pass).

    The program is the last fenced code block of ``response`` (``extract_code``); it
    must define ``problem["entry_point"]``. Never raises for a bad program (the verdict
    says what went wrong); raises ValueError for a malformed row and SandboxError when
    the sandbox or the canonical solution itself fails. ``timeout_s``: wall-clock
    backstop (default from the task's CPU budget, see module doc); ``memory_mb``:
    RLIMIT_AS of the program (EvalPlus's 4 GiB by default).
    """
    _validate(problem)
    ref = _reference(problem, memory_mb)
    n = len(ref.expected)
    cpu_budget = sum(ref.limits) + CPU_SLACK_S
    if timeout_s is None:
        timeout_s = min(MAX_TIMEOUT_S, max(MIN_TIMEOUT_S, WALL_FACTOR * cpu_budget))
    code = extract_code(response)
    if code is None:
        return CodeVerdict(False, "no_code", "no fenced code block in the response", n)
    outcome = run_harness(
        code,
        mode="call",
        entry=problem["entry_point"],
        tests=list(problem["base_input"]) + list(problem["plus_input"]),
        limits=ref.limits,
        timeout_s=timeout_s,
        memory_mb=memory_mb,
        cpu_s=min(cpu_budget, timeout_s),
        task_id=str(problem["task_id"]),
        fail_fast=True,
    )

    def check(i: int, rec: dict) -> tuple[str, str] | None:
        try:
            out = _harness.decode(rec.get("out"))
        except (ValueError, TypeError, KeyError, IndexError, RecursionError) as exc:
            return ("runtime_error", f"test {i}: undecodable output ({exc})")
        if check_output(ref.inputs[i], out, ref.expected[i], problem["atol"], problem["entry_point"]):
            return None
        return ("wrong_answer", f"test {i}: got {_short(out)}, expected {_short(ref.expected[i])}")

    return grade_outcome(outcome, n, check)


def _short(value, limit: int = 80) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."
