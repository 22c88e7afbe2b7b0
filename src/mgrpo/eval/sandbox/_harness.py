"""Test driver that runs INSIDE the sandbox, plus the value codec shared with the parent.

The parent sends this file's text as the sandboxed program (``run_program``); it reads
``job.json`` + ``tests.json`` from the work dir, loads the candidate from ``solution.py``
and appends one JSON line per test to ``results.jsonl``. Expected outputs never enter
the sandbox: the parent decodes the recorded outputs and compares them itself, so a
program cannot fake a pass by printing, by returning an object with a rigged ``__eq__``
or by tampering with this driver (it can only emit values, and only right values pass).

Modes:
- ``call``  (MBPP+): ``fn = globals()[entry_point]``; per test ``fn(*args)``; records the
  encoded return value and the CPU seconds of the call.
- ``stdio`` (LiveCodeBench stdin): per test, re-executes the module as ``__main__`` with
  ``sys.stdin`` holding the input; records the captured stdout text.
- ``method`` (LiveCodeBench functional): ``getattr(Solution(), func_name)(*args)``.

Each test runs under a CPU-time timer (``ITIMER_PROF``; immune to host contention).

Codec (``encode``/``decode``): JSON where every JSON object is a type tag, so tuples,
sets, dicts with any keys, complex, bytes, inf/nan and a few ``collections`` types
round-trip exactly; anything else becomes ``Opaque(type, repr)``. Stdlib only.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass

MAX_DEPTH = 200
MAX_REPR = 10_000
MAX_STDOUT = 1 << 20

# Star-imports LiveCodeBench puts in front of every program (so `List`, `deque`, ... exist).
LCB_PRELUDE = "\n".join(
    [
        f"from {m} import *"
        for m in (
            "string",
            "re",
            "datetime",
            "collections",
            "heapq",
            "bisect",
            "copy",
            "math",
            "random",
            "statistics",
            "itertools",
            "functools",
            "operator",
            "io",
            "sys",
            "json",
            "builtins",
            "typing",
        )
    ]
    + [
        "import string, re, datetime, collections, heapq, bisect, copy, math, random",
        "import statistics, itertools, functools, operator, io, sys, json",
        "sys.setrecursionlimit(50000)",
        "",
    ]
)


MAX_NODES = 200_000  # larger values are sent as a digest (see encode_or_digest)


class EncodeError(ValueError):
    """A value too deep (or cyclic) to encode."""


class _TooBig(Exception):
    pass


def encode_or_digest(x):
    """``encode(x)``, or for values over MAX_NODES nodes ``{"$": "digest", "v": ...}``.

    The digest is Python's ``hash`` of the value (lists turned into tuples, one level
    deep) under the fixed ``PYTHONHASHSEED``, falling back to a SHA-256 of its ``repr``
    when unhashable. It is C-fast on million-element outputs; like ``==`` it equates
    1, 1.0 and True, but it has no float tolerance and, being 64-bit, a (tiny) chance of
    collision. Only outputs with hundreds of thousands of elements take this path.
    """
    budget = [MAX_NODES]
    try:
        return encode(x, 0, budget)
    except _TooBig:
        pass
    name = f"{type(x).__module__}.{type(x).__qualname__}"
    try:
        key = tuple(tuple(i) if type(i) is list else i for i in x) if type(x) is list else x
        return {"$": "digest", "v": f"{name}:{len(x) if type(x) is list else -1}:{hash(key)}"}
    except TypeError:
        import hashlib

        return {
            "$": "digest",
            "v": f"{name}:sha256:"
            + hashlib.sha256(repr(x).encode("utf-8", "surrogatepass")).hexdigest(),
        }


@dataclass(frozen=True)
class Opaque:
    """A value of a type the codec does not rebuild; equal iff type name and repr are."""

    type_name: str
    text: str


@dataclass(frozen=True)
class Digest:
    """Stand-in for a value too large to send (see encode_or_digest)."""

    key: str


def encode(x, depth: int = 0, budget: list[int] | None = None):
    """Python value -> JSON-able value (see module doc). Raises EncodeError if too deep."""
    if depth > MAX_DEPTH:
        raise EncodeError("value nested too deeply")
    if budget is not None:
        budget[0] -= 1
        if budget[0] < 0:
            raise _TooBig()
    t = type(x)
    if x is None or t is bool or t is str:
        return x
    if t is int:
        return x
    if t is float:
        return x if math.isfinite(x) else {"$": "float", "v": repr(x)}
    if t is list:
        return [encode(v, depth + 1, budget) for v in x]
    if t is tuple:
        return {"$": "tuple", "v": [encode(v, depth + 1, budget) for v in x]}
    if t in (set, frozenset):
        items = [encode(v, depth + 1, budget) for v in x]
        return {"$": t.__name__, "v": items}
    if t is complex:
        return {
            "$": "complex",
            "v": [encode(x.real, depth + 1, budget), encode(x.imag, depth + 1, budget)],
        }
    if t is bytes:
        return {"$": "bytes", "v": x.hex()}
    name = f"{t.__module__}.{t.__qualname__}"
    if t is dict or name in (
        "collections.Counter",
        "collections.OrderedDict",
        "collections.defaultdict",
    ):
        pairs = [[encode(k, depth + 1, budget), encode(v, depth + 1, budget)] for k, v in x.items()]
        return {"$": "dict" if t is dict else name, "v": pairs}
    if name == "collections.deque":
        return {"$": name, "v": [encode(v, depth + 1, budget) for v in x]}
    if t is range:
        return {"$": "range", "v": [x.start, x.stop, x.step]}
    try:
        text = repr(x)[:MAX_REPR]
    except Exception as exc:  # a broken __repr__ is the program's problem
        text = f"<unrepresentable: {type(exc).__name__}>"
    return {"$": "opaque", "t": name, "v": text}


def decode(x):
    """Inverse of :func:`encode`; raises ValueError on anything it did not produce."""
    import collections

    if isinstance(x, list):
        return [decode(v) for v in x]
    if not isinstance(x, dict):
        if x is None or isinstance(x, (bool, int, float, str)):
            return x
        raise ValueError(f"unexpected JSON value {type(x).__name__}")
    tag, v = x.get("$"), x.get("v")
    if tag == "float":
        return float(v)
    if tag == "tuple":
        return tuple(decode(i) for i in v)
    if tag == "set":
        return {decode(i) for i in v}
    if tag == "frozenset":
        return frozenset(decode(i) for i in v)
    if tag == "complex":
        return complex(decode(v[0]), decode(v[1]))
    if tag == "bytes":
        return bytes.fromhex(v)
    if tag == "range":
        return range(*v)
    if tag == "collections.deque":
        return collections.deque(decode(i) for i in v)
    if tag in ("dict", "collections.Counter", "collections.OrderedDict", "collections.defaultdict"):
        pairs = [(decode(k), decode(val)) for k, val in v]
        if tag == "collections.Counter":
            return collections.Counter(dict(pairs))
        if tag == "collections.OrderedDict":
            return collections.OrderedDict(pairs)
        if tag == "collections.defaultdict":
            return collections.defaultdict(None, pairs)
        return dict(pairs)
    if tag == "opaque":
        return Opaque(str(x.get("t")), str(v))
    if tag == "digest":
        return Digest(str(v))
    raise ValueError(f"unknown codec tag {tag!r}")


def mbpp_deserialize_inputs(task_id: str, inputs: list) -> list:
    """Rebuild tuples/sets/complex that MBPP+ stores as JSON lists/strings.

    Same task-id table as EvalPlus ``evalplus/data/mbpp.py`` (MBPP+ v0.2.0).
    """
    tid = int(str(task_id).split("/")[-1])

    def tup_all(v):
        return tuple(tup_all(i) for i in v) if isinstance(v, list) else v

    if tid in (
        2,
        116,
        132,
        143,
        222,
        261,
        273,
        394,
        399,
        421,
        424,
        429,
        470,
        560,
        579,
        596,
        616,
        630,
        726,
        740,
        744,
        809,
    ):
        return [[tuple(lst) for lst in inp] for inp in inputs]
    if tid in (63, 64, 70, 94, 120, 237, 272, 299, 400, 409, 417, 438, 473, 614, 780):
        return [[[tuple(lst) for lst in ll] for ll in inp] for inp in inputs]
    if tid in (75, 413, 444, 753):
        return [[[tuple(lst) for lst in inp[0]]] + [inp[1]] for inp in inputs]
    if tid in (106, 750):
        return [[inp[0]] + [tuple(inp[1])] for inp in inputs]
    if tid == 115:  # EvalPlus turns empty lists into {} (a dict), kept for fidelity
        return [
            [[set(i) if isinstance(i, list) and len(i) else {} for i in inp[0]]] for inp in inputs
        ]
    if tid == 124:
        return [(float(inp[0]), complex(inp[1])) for inp in inputs]
    if tid in (250, 405, 446, 617, 720, 763, 808):
        return [[tuple(inp[0])] + [inp[1]] for inp in inputs]
    if tid in (259, 401, 445):
        mod = [[[tuple(lst) for lst in ll] for ll in inp] for inp in inputs]
        return [[tuple(lst) for lst in inp] for inp in mod]
    if tid == 278:
        mod = [[[tuple(i) if isinstance(i, list) else i for i in inp[0]]] for inp in inputs]
        return [[tuple(lst) for lst in inp] for inp in mod]
    if tid == 307:
        return [[tuple(inp[0])] + [inp[1], inp[2]] for inp in inputs]
    if tid == 722:
        return [[{k: tuple(v) for k, v in inp[0].items()}] + inp[1:] for inp in inputs]
    if tid == 252:
        return [[complex(inp[0])] for inp in inputs]
    if tid in (580, 615, 791):
        return [tup_all(inp) for inp in inputs]
    return inputs


# ----------------------------------------------------------------- sandbox side only


class _TestTimeout(BaseException):
    pass


_FD_STDIN, _FD_STDOUT = "stdin.bin", "stdout.bin"


def _redirect_fds(data: bytes) -> None:  # pragma: no cover - runs inside the sandbox
    """Point fds 0/1 at per-test files (Python-level sys.stdin/stdout are set separately)."""
    import os

    with open(_FD_STDIN, "wb") as f:
        f.write(data)
    for fd, name, flags in (
        (0, _FD_STDIN, os.O_RDONLY),
        (1, _FD_STDOUT, os.O_WRONLY | os.O_CREAT | os.O_TRUNC),
    ):
        new = os.open(name, flags, 0o600)
        if new != fd:  # fd may be free (a program closed it), then os.open reuses it
            os.dup2(new, fd)
            os.close(new)


def _fd_output(limit: int) -> bytes:  # pragma: no cover - runs inside the sandbox
    """Bytes the test wrote straight to fd 1 (bypassing sys.stdout)."""
    if limit <= 0:
        return b""
    try:
        with open(_FD_STDOUT, "rb") as f:
            return f.read(limit)
    except OSError:
        return b""


def _main() -> None:  # pragma: no cover - runs inside the sandbox
    import builtins
    import io
    import os
    import signal
    import sys
    import time

    with open("job.json") as f:
        job = json.load(f)
    with open("tests.json") as f:
        tests = json.load(f)
    mode, limits = job["mode"], job["limits"]
    if mode == "call":
        tests = mbpp_deserialize_inputs(job["task_id"], tests)
    out = open("results.jsonl", "w", encoding="utf-8")
    real_stdout = sys.stdout

    def emit(rec: dict) -> None:
        out.write(json.dumps(rec) + "\n")
        out.flush()

    def on_timer(signum, frame):
        raise _TestTimeout()

    signal.signal(signal.SIGPROF, on_timer)
    with open("solution.py", encoding="utf-8") as f:
        source = f.read()
    if mode != "call":
        source = LCB_PRELUDE + source
    devnull = open(os.devnull, "w")
    try:
        code = compile(source, "solution.py", "exec")
    except BaseException as exc:  # SyntaxError, MemoryError, ...
        emit({"load_error": f"{type(exc).__name__}: {exc}"[:500]})
        return
    fn = None
    if mode in ("call", "method"):
        # Not "__main__": demo code under a main guard must not run (as in EvalPlus's
        # sanitizer and LiveCodeBench's call-based runner).
        env = {"__name__": "solution", "__builtins__": builtins}
        sys.stdout, sys.stdin = devnull, io.StringIO("")
        try:
            signal.setitimer(signal.ITIMER_PROF, job["load_limit"])
            exec(code, env)
            signal.setitimer(signal.ITIMER_PROF, 0)
            name = job["entry"]
            if mode == "method" and "Solution" in env:
                fn = getattr(env["Solution"](), name)
            else:
                fn = env[name]
        except BaseException as exc:
            signal.setitimer(signal.ITIMER_PROF, 0)
            sys.stdout = real_stdout
            kind = "timeout" if isinstance(exc, _TestTimeout) else type(exc).__name__
            emit({"load_error": f"{kind}: {exc}"[:500]})
            return
        finally:
            sys.stdout = real_stdout
    emit({"loaded": True})
    for i, test in enumerate(tests):
        rec: dict = {"i": i}
        captured = wrapper = None
        stdout_bytes = b""
        try:
            if mode == "stdio":
                data = test.encode("utf-8")
                _redirect_fds(data)  # for open(0).read(), os.write(1, ...) and friends
                sys.stdin = io.TextIOWrapper(io.BytesIO(data), encoding="utf-8")
                captured = io.BytesIO()
                wrapper = io.TextIOWrapper(captured, encoding="utf-8", write_through=True)
                sys.stdout = wrapper
            else:
                sys.stdout, sys.stdin = devnull, io.StringIO("")
                args = [json.loads(line) for line in test.split("\n")] if mode == "method" else test
            t0 = time.process_time()
            signal.setitimer(signal.ITIMER_PROF, limits[i])
            try:
                if mode == "stdio":
                    try:
                        exec(code, {"__name__": "__main__", "__builtins__": builtins})
                    except SystemExit:
                        pass
                    value = None
                else:
                    value = fn(*args)
            finally:
                signal.setitimer(signal.ITIMER_PROF, 0)
                cpu = time.process_time() - t0
                if wrapper is not None:
                    try:
                        wrapper.flush()
                    except BaseException:
                        pass
                    if not captured.closed:
                        stdout_bytes = captured.getvalue()[:MAX_STDOUT]
                sys.stdout, sys.stdin = real_stdout, sys.__stdin__
            rec["cpu"] = cpu
            if mode == "stdio":
                stdout_bytes += _fd_output(MAX_STDOUT - len(stdout_bytes))
                rec["out"] = stdout_bytes.decode("utf-8", "replace")
            else:
                rec["out"] = encode_or_digest(value)
        except _TestTimeout:
            sys.stdout = real_stdout
            rec = {"i": i, "exc": "timeout"}
        except MemoryError:
            sys.stdout = real_stdout
            rec = {"i": i, "exc": "MemoryError"}
        except BaseException as exc:
            sys.stdout = real_stdout
            rec = {"i": i, "exc": f"{type(exc).__name__}: {exc}"[:300]}
        try:
            emit(rec)
        except (ValueError, TypeError, RecursionError):  # e.g. a str subclass in `out`
            rec = {"i": i, "exc": "unencodable output"}
            emit(rec)
        if "exc" in rec and job.get("fail_fast"):
            break  # all-or-nothing: the verdict is already a failure
    emit({"done": len(tests)})


if __name__ == "__main__":
    _main()
