"""math-verify worker process: reads batches of (gold, candidate) pairs, answers one line per pair.

Run by ``AnswerChecker`` as a separate interpreter (``python -c BOOT sys_path this_file ...``),
NOT through ``multiprocessing``: a spawned/forkserver child re-imports the parent's
``__main__`` (a training script that may import torch or, unguarded, start training), while this
file imports only the standard library and math_verify. It is therefore safe to start from
any thread and from a process that has torch/CUDA loaded (no fork of the parent's state).

Protocol (JSON lines, ASCII, so lone surrogates survive as ``\\udXXX`` escapes):
  child -> parent, once:   {"ready": true}
  parent -> child:         {"pairs": [[gold, candidate], ...], "hang": token-or-null}
  child -> parent, per pair in order: {"i": k, "r": "eq" | "neq" | "parse_failure" | "error"}
The parent enforces the per-pair deadline and SIGKILLs this process on timeout; math-verify's
own signal-based timeouts are disabled here (``parsing_timeout=None``, ``timeout_seconds=None``).
stdout is reserved for the protocol: fd 1 is redirected to stderr before math_verify loads.

Gold-side parsing: both sides are parsed with ``[LatexExtractionConfig(), ExprExtractionConfig()]``;
a bare answer (no ``$``, ``\\(``, ``\\[`` or ``\\boxed``) is wrapped as ``$answer$`` first so the
LaTeX extractor sees all of it (unwrapped, math-verify would look for delimiters and might parse
only a fragment). ``verify(gold, candidate)`` is asymmetric (equations/assignments are simplified
on the gold side); the first argument of ``AnswerChecker.equivalent`` is treated as the gold.
A side without any SymPy object after parsing is a parse failure (not equivalent).
"""

from __future__ import annotations

import json
import logging
import os
import sys
import threading
import time

DELIMITERS = ("$", "\\(", "\\[", "\\boxed", "\\fbox")
PARENT_POLL_S = 1.0
HANG_SLEEP_S = 3600.0


def wrap(answer: str) -> str:
    """``$answer$`` unless the answer already carries LaTeX delimiters or a box."""
    if any(d in answer for d in DELIMITERS):
        return answer
    return f"${answer}$"


def _watch_parent(parent_pid: int) -> None:
    """Exit when the parent dies, even while math-verify is stuck in a long computation."""
    while True:
        time.sleep(PARENT_POLL_S)
        if os.getppid() != parent_pid:
            os._exit(0)


def _limit_memory(memory_mb: int) -> None:
    if memory_mb <= 0:
        return
    try:
        import resource

        limit = memory_mb * 1024 * 1024
        resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
    except (ImportError, ValueError, OSError):  # pragma: no cover - platform without RLIMIT_AS
        pass


def main(argv: list[str]) -> int:
    parent_pid = int(argv[0])
    memory_mb = int(argv[1])
    proto = os.fdopen(os.dup(1), "w", encoding="ascii", buffering=1)
    os.dup2(2, 1)  # anything else printed to stdout goes to stderr
    sys.stdout = sys.stderr
    threading.Thread(target=_watch_parent, args=(parent_pid,), daemon=True).start()

    for name in ("math_verify", "latex2sympy2_extended"):
        logging.getLogger(name).setLevel(logging.CRITICAL)
    from math_verify import ExprExtractionConfig, LatexExtractionConfig, parse, verify
    from sympy import Basic, MatrixBase

    config = [LatexExtractionConfig(), ExprExtractionConfig()]

    def check(gold: str, pred: str) -> str:
        parsed_gold = parse(wrap(gold), config, parsing_timeout=None)
        parsed_pred = parse(wrap(pred), config, parsing_timeout=None)

        def has_expr(parsed: list) -> bool:
            return any(isinstance(x, (Basic, MatrixBase)) for x in parsed)

        if not has_expr(parsed_gold) or not has_expr(parsed_pred):
            return "parse_failure"
        return "eq" if verify(parsed_gold, parsed_pred, timeout_seconds=None) else "neq"

    check("1", "1")  # warm the parser caches before announcing readiness
    _limit_memory(memory_mb)
    proto.write(json.dumps({"ready": True}) + "\n")

    for line in sys.stdin:
        request = json.loads(line)
        hang = request.get("hang")
        for i, (gold, pred) in enumerate(request["pairs"]):
            if hang is not None and pred == hang:
                time.sleep(HANG_SLEEP_S)  # test hook: a comparison that never finishes
            try:
                result = check(gold, pred)
            except Exception:  # noqa: BLE001 - any failure of math-verify is "not equivalent"
                result = "error"
            proto.write(json.dumps({"i": i, "r": result}) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
