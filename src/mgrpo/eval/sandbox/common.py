"""Pieces shared by the code graders: code extraction, verdicts, the harness round trip."""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from mgrpo.eval.sandbox.runner import RunResult, run_program

HARNESS_SOURCE_PATH = Path(__file__).with_name("_harness.py")
RESULTS_FILE = "results.jsonl"
RESULTS_FILE_LIMIT = 256 << 20
_FENCE = re.compile(r"```[ \t]*([A-Za-z0-9_+\-.]*)[^\n]*\n(.*?)(?:```|\Z)", re.DOTALL)
_PYTHON_TAGS = {"python", "py", "python3"}


@dataclass(frozen=True)
class CodeVerdict:
    """Result of grading one program.

    passed: every test passed (all-or-nothing). status: "passed" | "no_code" |
    "syntax_error" | "load_error" (module or entry point failed) | "wrong_answer" |
    "runtime_error" | "timeout" | "memory" | "killed". detail: one short human line
    (first failing test). n_tests: tests in the suite; n_passed: tests that matched.
    """

    passed: bool
    status: str
    detail: str
    n_tests: int
    n_passed: int = 0


def extract_code(response: str) -> str | None:
    """The last ```python fenced block of ``response``, else the last ``` block, else None.

    Tags accepted as Python: python, py, python3 (case-insensitive). An unterminated
    final fence counts (the model ran out of tokens inside it). Blank blocks are skipped.
    """
    if not isinstance(response, str):
        raise ValueError(f"response must be a str, got {type(response).__name__}")
    blocks = [(m.group(1).lower(), m.group(2)) for m in _FENCE.finditer(response)]
    blocks = [(tag, body) for tag, body in blocks if body.strip()]
    python = [body for tag, body in blocks if tag in _PYTHON_TAGS]
    if python:
        return python[-1]
    untagged = [body for tag, body in blocks if not tag]
    return untagged[-1] if untagged else None


@dataclass
class HarnessOutcome:
    """Parsed harness output: per-test records (index -> record) and the raw run."""

    load_error: str | None
    records: dict[int, dict]
    run: RunResult


def run_harness(
    code: str,
    *,
    mode: str,
    entry: str | None,
    tests: list,
    limits: list[float],
    timeout_s: float,
    memory_mb: int,
    cpu_s: float | None = None,
    task_id: str = "",
    fail_fast: bool = False,
) -> HarnessOutcome:
    """Run ``code`` against ``tests`` with the sandboxed harness (see ``_harness``)."""
    job = {
        "mode": mode,
        "entry": entry,
        "task_id": task_id,
        "limits": limits,
        "load_limit": max(1.0, timeout_s),
        "fail_fast": fail_fast,
    }
    run = run_program(
        HARNESS_SOURCE_PATH.read_text(encoding="utf-8"),
        timeout_s=timeout_s,
        memory_mb=memory_mb,
        cpu_s=cpu_s,
        files={"solution.py": code, "job.json": json.dumps(job), "tests.json": json.dumps(tests)},
        read_files=(RESULTS_FILE,),
        file_limit=RESULTS_FILE_LIMIT,
    )
    records: dict[int, dict] = {}
    load_error = None
    loaded = False
    raw = run.files.get(RESULTS_FILE, b"").decode("utf-8", "replace")
    for line in raw.splitlines():
        try:
            rec = json.loads(line)
        except (json.JSONDecodeError, RecursionError):
            continue
        if not isinstance(rec, dict):
            continue
        if "load_error" in rec and not loaded:
            load_error = str(rec["load_error"])
        elif rec.get("loaded") is True:
            loaded = True
        elif isinstance(rec.get("i"), int) and rec["i"] not in records:
            records[rec["i"]] = rec
    if not loaded and load_error is None:
        load_error = f"harness did not start ({run.status}): {run.stderr.strip()[-300:]}"
    return HarnessOutcome(load_error=load_error, records=records, run=run)


def failure_status(exc: str) -> str:
    """Verdict status for a per-test exception string recorded by the harness."""
    if exc == "timeout":
        return "timeout"
    if exc.startswith("MemoryError"):
        return "memory"
    return "runtime_error"


def load_failure_status(load_error: str) -> str:
    """Verdict status when the module or its entry point failed to load in the sandbox."""
    kind = load_error.split(":")[0]
    if kind in ("SyntaxError", "IndentationError", "TabError"):
        return "syntax_error"
    status = failure_status(kind)
    return "load_error" if status == "runtime_error" else status


def run_failure(outcome: HarnessOutcome, n_tests: int, n_passed: int) -> CodeVerdict | None:
    """Verdict when the run itself failed (timeout, memory, killed) before all tests ran."""
    run = outcome.run
    if len(outcome.records) >= n_tests and run.status == "ok":
        return None
    status = {"timeout": "timeout", "memory": "memory", "killed": "killed"}.get(
        run.status, "runtime_error"
    )
    tail = run.stderr.strip().splitlines()[-1:] or [f"exit {run.returncode}"]
    detail = f"run ended with status {run.status} after {len(outcome.records)}/{n_tests} tests: {tail[0][:200]}"
    return CodeVerdict(False, status, detail, n_tests, n_passed)


def final_verdict(
    first: tuple[str, str] | None, outcome: HarnessOutcome, n: int, n_passed: int
) -> CodeVerdict:
    """The verdict of a graded run: its first failing test (status, detail), else a broken
    run (crash, timeout, memory), else all `n` tests passed."""
    if first is not None:
        return CodeVerdict(False, first[0], first[1][:300], n, n_passed)
    broken = run_failure(outcome, n, n_passed)
    if broken is not None:
        return broken
    return CodeVerdict(True, "passed", f"{n}/{n} tests passed", n, n_passed)


def grade_outcome(
    outcome: HarnessOutcome,
    n: int,
    check: Callable[[int, dict], tuple[str, str] | None],
) -> CodeVerdict:
    """The verdict of a harness run over `n` tests.

    A load failure is the verdict (`load_failure_status`). Otherwise every recorded test is
    graded in order: a recorded exception fails it (`failure_status`), else
    `check(i, record)` returns None (passed) or `(status, detail)` (failed); a test without a
    record (the run stopped first) is skipped. Then `final_verdict` over the first failure.
    """
    if outcome.load_error is not None:
        status = load_failure_status(outcome.load_error)
        return CodeVerdict(False, status, outcome.load_error[:300], n)
    n_passed, first = 0, None
    for i in range(n):
        rec = outcome.records.get(i)
        if rec is None:
            continue
        if "exc" in rec:
            fail = (failure_status(str(rec["exc"])), f"test {i}: {rec['exc']}")
        else:
            fail = check(i, rec)
        if fail is None:
            n_passed += 1
        else:
            first = first or fail
    return final_verdict(first, outcome, n, n_passed)

