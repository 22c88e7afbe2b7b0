"""LiveCodeBench grading (stdin/stdout and functional tests) on top of the sandbox.

Expected row format (LiveCodeBench ``code_generation_lite``; only these keys are read):

- ``question_id`` (str, optional): used in messages.
- ``public_test_cases``: list, or JSON string of a list, of
  ``{"input": str, "output": str, "testtype": "stdin" | "functional"}``.
- ``private_test_cases``: same shape; either plain JSON (list or string) or the lite
  release's compressed form ``base64(zlib(pickle(json_string)))``. The compressed form is
  decoded with a restricted unpickler that refuses every global (so only plain str /
  list / dict / number opcodes load; nothing executes), after a size-capped inflate.
- ``metadata``: dict or JSON string; functional tests need ``{"func_name": "..."}``.
- ``starter_code`` (optional): not used for grading.

stdin tests: the program runs as ``__main__`` once per test with the input on
``sys.stdin``; its stdout is compared like LiveCodeBench does: both sides stripped and
split into lines, each line stripped; equal line counts; each line equal as text or,
failing that, as a list of ``Decimal`` tokens. Functional tests: each input line is one
JSON argument; ``Solution().<func_name>(*args)`` (or a top-level ``func_name``); a
returned tuple becomes a list; the result must ``==`` the JSON-decoded output. As in
LiveCodeBench, LCB's import prelude (``from typing import *`` etc.) precedes the program.
All tests must pass. Per-test limit: CPU seconds (LiveCodeBench uses 6 s wall).
"""

from __future__ import annotations

import base64
import binascii
import io
import json
import pickle
import zlib
from decimal import Decimal, InvalidOperation

from mgrpo.eval.sandbox import _harness
from mgrpo.eval.sandbox.common import CodeVerdict, extract_code, grade_outcome, run_harness

DEFAULT_TEST_TIMEOUT_S = 6.0  # LiveCodeBench's per-test timeout
MAX_TOTAL_TIMEOUT_S = 120.0
DEFAULT_MEMORY_MB = 1024
MAX_INFLATED_BYTES = 512 << 20
TEST_TYPES = ("stdin", "functional")


class _NoGlobalsUnpickler(pickle.Unpickler):
    """Unpickler that loads only primitive values: any class/function lookup is refused."""

    def find_class(self, module: str, name: str):
        raise pickle.UnpicklingError(f"refusing to load global {module}.{name}")


def _inflate(blob: str, where: str) -> str:
    try:
        raw = base64.b64decode(blob, validate=False)
        d = zlib.decompressobj()
        data = d.decompress(raw, MAX_INFLATED_BYTES)
        if d.unconsumed_tail:
            raise ValueError(f"{where}: decompressed test cases exceed {MAX_INFLATED_BYTES} bytes")
        value = _NoGlobalsUnpickler(io.BytesIO(data)).load()
    except (binascii.Error, zlib.error, pickle.UnpicklingError, EOFError) as exc:
        raise ValueError(
            f"{where}: not JSON and not base64/zlib/pickle test cases ({exc})"
        ) from exc
    if not isinstance(value, str):
        raise ValueError(f"{where}: compressed test cases must hold a JSON string")
    return value


def _parse_cases(value, where: str) -> list[dict]:
    if value is None or value == "":
        return []
    if isinstance(value, str):
        text = value.strip()
        if not text.startswith("["):
            text = _inflate(text, where)
        try:
            value = json.loads(text)
        except json.JSONDecodeError as exc:
            raise ValueError(f"{where}: invalid JSON ({exc})") from exc
    if not isinstance(value, list):
        raise ValueError(f"{where}: expected a list of test cases, got {type(value).__name__}")
    cases = []
    for k, case in enumerate(value):
        if not isinstance(case, dict) or not {"input", "output"} <= case.keys():
            raise ValueError(f"{where}[{k}]: each test case needs 'input' and 'output'")
        kind = case.get("testtype", "stdin")
        if kind not in TEST_TYPES:
            raise ValueError(f"{where}[{k}]: testtype {kind!r} not in {TEST_TYPES}")
        cases.append({"input": str(case["input"]), "output": str(case["output"]), "testtype": kind})
    return cases


def load_test_cases(problem: dict) -> list[dict]:
    """Public then private test cases of a LiveCodeBench row (format in the module doc)."""
    if not isinstance(problem, dict):
        raise ValueError(
            f"problem must be a LiveCodeBench row (dict), got {type(problem).__name__}"
        )
    qid = problem.get("question_id", "?")
    cases = _parse_cases(problem.get("public_test_cases"), f"{qid}.public_test_cases")
    cases += _parse_cases(problem.get("private_test_cases"), f"{qid}.private_test_cases")
    if not cases:
        raise ValueError(f"LiveCodeBench problem {qid!r} has no test cases")
    kinds = {c["testtype"] for c in cases}
    if len(kinds) > 1:
        raise ValueError(f"LiveCodeBench problem {qid!r} mixes test types {sorted(kinds)}")
    return cases


def _func_name(problem: dict) -> str:
    meta = problem.get("metadata") or {}
    if isinstance(meta, str):
        try:
            meta = json.loads(meta) if meta.strip() else {}
        except json.JSONDecodeError as exc:
            raise ValueError(f"{problem.get('question_id', '?')}.metadata: invalid JSON") from exc
    name = meta.get("func_name") if isinstance(meta, dict) else None
    if not isinstance(name, str) or not name.isidentifier():
        raise ValueError(
            f"LiveCodeBench problem {problem.get('question_id', '?')!r}: functional tests need "
            f"metadata.func_name, got {name!r}"
        )
    return name


def _decimals(line: str) -> list[Decimal] | None:
    try:
        return [Decimal(tok) for tok in line.split()]
    except (InvalidOperation, ValueError):
        return None


def stdout_matches(prediction: str, expected: str) -> bool:
    """LiveCodeBench stdin comparison (see module doc)."""
    pred = [line.strip() for line in prediction.strip().split("\n")]
    gold = [line.strip() for line in expected.strip().split("\n")]
    if len(pred) != len(gold):
        return False
    for p, g in zip(pred, gold, strict=True):
        if p == g:
            continue
        dp, dg = _decimals(p), _decimals(g)
        if dp is None or dg is None or dp != dg:
            return False
    return True


def grade_livecodebench(
    response: str,
    problem: dict,
    *,
    timeout_s: float | None = None,
    test_timeout_s: float = DEFAULT_TEST_TIMEOUT_S,
    memory_mb: int = DEFAULT_MEMORY_MB,
) -> CodeVerdict:
    """Grade a model response on one LiveCodeBench problem (all tests must pass).

    ``timeout_s`` bounds the whole run (default: ``min(120, 5 + n_tests * test_timeout_s)``);
    ``test_timeout_s`` is the per-test CPU limit. Raises ValueError for a malformed row.
    """
    cases = load_test_cases(problem)
    n = len(cases)
    functional = cases[0]["testtype"] == "functional"
    entry = _func_name(problem) if functional else None
    code = extract_code(response)
    if code is None:
        return CodeVerdict(False, "no_code", "no fenced code block in the response", n)
    if timeout_s is None:
        timeout_s = min(MAX_TOTAL_TIMEOUT_S, 5.0 + n * test_timeout_s)
    outcome = run_harness(
        code,
        mode="method" if functional else "stdio",
        entry=entry,
        tests=[c["input"] for c in cases],
        limits=[test_timeout_s] * n,
        timeout_s=timeout_s,
        memory_mb=memory_mb,
        fail_fast=True,
    )

    def check(i: int, rec: dict) -> tuple[str, str] | None:
        case = cases[i]
        if functional:
            try:
                out = _harness.decode(rec.get("out"))
                gold = json.loads(case["output"])
            except (ValueError, TypeError, KeyError, IndexError, RecursionError) as exc:
                return ("runtime_error", f"test {i}: undecodable output ({exc})")
            if isinstance(out, tuple):
                out = list(out)
            try:
                ok = bool(out == gold)
            except (TypeError, ValueError, RecursionError):
                ok = False
            if ok:
                return None
            return ("wrong_answer", f"test {i}: got {repr(out)[:80]}, expected {case['output'][:80]}")
        if stdout_matches(str(rec.get("out", "")), case["output"]):
            return None
        return (
            "wrong_answer",
            f"test {i}: got {str(rec.get('out'))[:80]!r}, expected {case['output'][:80]!r}",
        )

    return grade_outcome(outcome, n, check)
