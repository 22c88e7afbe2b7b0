"""Answer equivalence: exact-match fast path, then math-verify in killable worker processes.

``AnswerChecker(timeout_s=5.0, workers=1)``:

- ``equivalent(gold, candidate)`` / ``equivalent_many(pairs)``: each pair is first decided by
  ``normalize.fast_compare`` (exact match after conservative normalisation, or two different
  integers); the rest go to a pool of math-verify worker processes (``_worker.py``) in ONE
  round trip per worker: the whole batch is written at once and the worker answers pair by pair.
- Hard timeout: the parent gives each pair ``timeout_s`` seconds (the clock restarts when the
  previous pair's answer arrives). On expiry the worker is SIGKILLed, the pair counts as not
  equivalent (``stats["timeouts"]``), a fresh worker is started and the remaining pairs are
  resent. A worker that dies (e.g. a C-stack overflow on absurd nesting) is handled the same way
  (``stats["crashes"]``). Nothing is raised to the caller for any answer content.
- Thread-safe: workers are checked out from an idle list under a lock, so several threads can
  compare at once (up to ``workers`` in parallel); signals are never used, so any thread works.
- Lazy: no process starts until math-verify is first needed. ``close()`` kills the workers;
  an ``atexit`` finaliser does the same for checkers never closed.
- Answers longer than ``max_chars`` or nesting brackets deeper than ``max_depth`` skip
  math-verify (not equivalent, ``stats["too_complex"]``): real final answers are short and
  shallow, and parsing 100 kB of LaTeX or 200 nested ``\\sqrt{`` only burns the timeout (or
  overflows the parser's recursion).

Departures from the brief's sketch: workers are separate interpreters started with
``subprocess`` rather than ``multiprocessing`` spawn/forkserver (see ``_worker.py``: no
re-import of the caller's ``__main__``), talking JSON lines over pipes; the parent waits on them
with ``select`` (POSIX). Worker memory is capped (``memory_mb``, RLIMIT_AS) so ``10^{10^{10}}``
fails inside the worker instead of swapping the machine.

Stats keys: ``calls`` (pairs compared), ``fast_path`` (decided without math-verify),
``verified`` (sent to math-verify), ``timeouts``, ``parse_failures`` (a side had no parsable
expression, or math-verify raised), ``crashes``, ``too_complex``, ``worker_starts``.
"""

from __future__ import annotations

import json
import os
import select
import subprocess
import sys
import tempfile
import threading
import time
import weakref
from collections.abc import Sequence
from pathlib import Path

from mgrpo.checks import check_int

from .normalize import fast_compare

__all__ = ["AnswerChecker", "WorkerStartError", "default_checker", "is_equivalent"]

DEFAULT_TIMEOUT_S = 5.0
DEFAULT_STARTUP_TIMEOUT_S = 120.0  # importing sympy on a contended 2-core machine is slow
DEFAULT_MEMORY_MB = 2048
# Final answers are short; past ~1000 characters math-verify 0.9 starts failing to parse LaTeX
# and silently falls back to a fragment (a 2001-term sum 1+1+...+1 was judged equal to 1).
DEFAULT_MAX_CHARS = 1000
# math-verify 0.9 is exponential in bracket nesting: 8 nested parentheses took ~4 s, 12 nested
# braces > 10 s (2-core machine). Real final answers nest 2-4 deep.
DEFAULT_MAX_DEPTH = 10
_OPENERS = frozenset("{([")
_CLOSERS = frozenset("})]")
READ_CHUNK = 65536
STDERR_TAIL_CHARS = 2000
WORKER_PATH = Path(__file__).with_name("_worker.py")
_BOOT = (
    "import json, runpy, sys; sys.path[:] = json.loads(sys.argv[1]); "
    "sys.argv = [sys.argv[2]] + sys.argv[3:]; runpy.run_path(sys.argv[0], run_name='__main__')"
)
_STAT_KEYS = ("calls", "fast_path", "verified", "timeouts", "parse_failures", "crashes",
              "too_complex", "worker_starts")


class WorkerStartError(RuntimeError):
    """The math-verify worker could not start (math_verify missing, startup timeout...)."""


class _Worker:
    """One math-verify child process and its line buffer."""

    def __init__(self, startup_timeout_s: float, memory_mb: int) -> None:
        self.stderr = tempfile.TemporaryFile()
        self.proc = subprocess.Popen(
            [sys.executable, "-c", _BOOT, json.dumps(sys.path), str(WORKER_PATH),
             str(os.getpid()), str(memory_mb)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=self.stderr,
            close_fds=True,
            start_new_session=True,  # Ctrl-C in the terminal reaches the parent only
        )
        self._buffer = b""
        try:
            ready = self.read_message(time.monotonic() + startup_timeout_s)
        except (TimeoutError, EOFError) as e:
            tail = self.stderr_tail()
            self.kill()
            raise WorkerStartError(
                f"math-verify worker did not start ({type(e).__name__}); stderr tail:\n{tail}"
            ) from None
        if ready != {"ready": True}:  # pragma: no cover - protocol violation
            self.kill()
            raise WorkerStartError(f"math-verify worker sent {ready!r} instead of ready")

    def stderr_tail(self) -> str:
        try:
            self.stderr.seek(0, os.SEEK_END)
            size = self.stderr.tell()
            self.stderr.seek(max(0, size - STDERR_TAIL_CHARS))
            return self.stderr.read().decode("utf-8", "replace")
        except (OSError, ValueError):  # pragma: no cover
            return ""

    def send(self, pairs: Sequence[tuple[str, str]], hang: str | None) -> None:
        assert self.proc.stdin is not None
        line = json.dumps({"pairs": [list(p) for p in pairs], "hang": hang}) + "\n"
        self.proc.stdin.write(line.encode("ascii"))
        self.proc.stdin.flush()

    def read_message(self, deadline: float) -> dict:
        """Next JSON line; TimeoutError at ``deadline`` (monotonic), EOFError if the child died."""
        assert self.proc.stdout is not None
        fd = self.proc.stdout.fileno()
        while b"\n" not in self._buffer:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise TimeoutError
            ready, _, _ = select.select([fd], [], [], remaining)
            if not ready:
                raise TimeoutError
            chunk = os.read(fd, READ_CHUNK)
            if not chunk:
                raise EOFError
            self._buffer += chunk
        line, self._buffer = self._buffer.split(b"\n", 1)
        return json.loads(line)

    def alive(self) -> bool:
        return self.proc.poll() is None

    def kill(self) -> None:
        _kill_process(self.proc)
        self.stderr.close()


def _kill_process(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        try:
            proc.kill()  # SIGKILL: a worker stuck inside sympy cannot be asked politely
        except ProcessLookupError:  # pragma: no cover - exited in between
            pass
    for stream in (proc.stdin, proc.stdout):
        if stream is not None:
            try:
                stream.close()
            except OSError:  # pragma: no cover - broken pipe to a dead child
                pass
    try:
        proc.wait(timeout=10)
    except subprocess.TimeoutExpired:  # pragma: no cover - unkillable (D state)
        pass


def nesting_depth(text: str) -> int:
    """Maximum nesting of ``{``, ``(``, ``[`` (closers decrease it, never below 0). Linear."""
    depth = best = 0
    for ch in text:
        if ch in _OPENERS:
            depth += 1
            if depth > best:
                best = depth
        elif ch in _CLOSERS and depth:
            depth -= 1
    return best


def _kill_all(workers: list[_Worker]) -> None:
    """Finaliser: kill every worker in the (shared, mutable) list."""
    for worker in list(workers):
        worker.kill()
    workers.clear()


class AnswerChecker:
    """Equivalence of final answers with a hard per-pair timeout; see the module docstring.

    Args:
        timeout_s: seconds allowed per math-verify comparison (parse both sides + verify).
        workers: maximum number of worker processes (started lazily, one per concurrent need).
        memory_mb: address-space cap of each worker (0 disables the cap).
        max_chars: answers longer than this are not sent to math-verify (not equivalent).
        max_depth: answers nesting brackets deeper than this are not sent either.
        startup_timeout_s: seconds allowed for a worker to import math-verify and say ready.
    """

    def __init__(
        self,
        timeout_s: float = DEFAULT_TIMEOUT_S,
        workers: int = 1,
        *,
        memory_mb: int = DEFAULT_MEMORY_MB,
        max_chars: int = DEFAULT_MAX_CHARS,
        max_depth: int = DEFAULT_MAX_DEPTH,
        startup_timeout_s: float = DEFAULT_STARTUP_TIMEOUT_S,
    ) -> None:
        if not timeout_s > 0:
            raise ValueError(f"AnswerChecker: timeout_s must be > 0, got {timeout_s!r}")
        check_int(workers, "AnswerChecker: workers", low=1)
        if memory_mb < 0:
            raise ValueError(f"AnswerChecker: memory_mb must be >= 0, got {memory_mb!r}")
        if max_chars < 1:
            raise ValueError(f"AnswerChecker: max_chars must be >= 1, got {max_chars!r}")
        self.timeout_s = float(timeout_s)
        self.workers = workers
        self.memory_mb = memory_mb
        self.max_chars = max_chars
        if max_depth < 1:
            raise ValueError(f"AnswerChecker: max_depth must be >= 1, got {max_depth!r}")
        self.max_depth = max_depth
        self.startup_timeout_s = float(startup_timeout_s)
        self._cond = threading.Condition()
        self._idle: list[_Worker] = []
        self._all: list[_Worker] = []  # every live worker (idle or checked out)
        self._starting = 0
        self._closed = False
        self._stats = dict.fromkeys(_STAT_KEYS, 0)
        self._hang_token: str | None = None  # test hook, see tests/answers
        self._finalizer = weakref.finalize(self, _kill_all, self._all)

    # ----------------------------------------------------------------- public API
    @property
    def stats(self) -> dict[str, int]:
        """A snapshot of the counters (see the module docstring for the keys)."""
        with self._cond:
            return dict(self._stats)

    def equivalent(self, gold: str, candidate: str) -> bool:
        """Whether ``candidate`` is equivalent to ``gold`` (None on either side -> False)."""
        return self.equivalent_many([(gold, candidate)])[0]

    def equivalent_many(self, pairs: Sequence[tuple[str | None, str | None]]) -> list[bool]:
        """Equivalence of each (gold, candidate) pair; one round trip per worker used.

        Identical pairs are compared once. ``None`` answers are not equivalent to anything.
        Raises ``TypeError`` for a non-string, non-None answer, ``WorkerStartError`` when no
        worker can be started, and ``RuntimeError`` after ``close()``.
        """
        results: list[bool | None] = [None] * len(pairs)
        pending: dict[tuple[str, str], list[int]] = {}
        fast = too_complex = 0
        for k, pair in enumerate(pairs):
            if not isinstance(pair, (tuple, list)) or len(pair) != 2:
                raise TypeError(f"equivalent_many: pairs[{k}] must be a (gold, candidate) pair")
            gold, cand = pair
            for name, value in (("gold", gold), ("candidate", cand)):
                if value is not None and not isinstance(value, str):
                    raise TypeError(
                        f"equivalent_many: pairs[{k}] {name} must be str or None, "
                        f"got {type(value).__name__}"
                    )
            if gold is None or cand is None:
                results[k] = False
                fast += 1
                continue
            decided = fast_compare(gold, cand)
            if decided is not None:
                results[k] = decided
                fast += 1
            elif self._too_complex(gold) or self._too_complex(cand):
                results[k] = False
                too_complex += 1
            else:
                pending.setdefault((gold, cand), []).append(k)
        with self._cond:
            if self._closed:
                raise RuntimeError("AnswerChecker is closed")
            self._stats["calls"] += len(pairs)
            self._stats["fast_path"] += fast
            self._stats["too_complex"] += too_complex
        if pending:
            unique = list(pending)
            for pair, verdict in zip(unique, self._verify(unique), strict=True):
                for k in pending[pair]:
                    results[k] = verdict
        return [bool(r) for r in results]

    def _too_complex(self, answer: str) -> bool:
        return len(answer) > self.max_chars or nesting_depth(answer) > self.max_depth

    def close(self) -> None:
        """Kill all workers; further calls raise RuntimeError. Idempotent."""
        with self._cond:
            self._closed = True
            self._idle.clear()
            self._cond.notify_all()
        self._finalizer()

    def __enter__(self) -> AnswerChecker:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ----------------------------------------------------------------- pool
    def _checkout(self, want: int) -> list[_Worker]:
        """At least one worker (blocking), plus up to ``want - 1`` more if free right now."""
        got: list[_Worker] = []
        to_start = 0
        with self._cond:
            while True:
                if self._closed:
                    raise RuntimeError("AnswerChecker is closed")
                while self._idle and len(got) < want:
                    got.append(self._idle.pop())
                capacity = self.workers - len(self._all) - self._starting
                to_start = max(0, min(want - len(got), capacity))
                self._starting += to_start
                if got or to_start:
                    break
                self._cond.wait()
        try:
            for _ in range(to_start):
                got.append(self._start_worker())
        except BaseException:
            self._checkin(got)
            raise
        finally:
            with self._cond:
                self._starting -= to_start
        return got

    def _start_worker(self) -> _Worker:
        worker = _Worker(self.startup_timeout_s, self.memory_mb)
        with self._cond:
            self._all.append(worker)
            self._stats["worker_starts"] += 1
        return worker

    def _checkin(self, workers: list[_Worker]) -> None:
        with self._cond:
            for worker in workers:
                if self._closed:
                    continue
                if worker.alive() and worker in self._all:
                    self._idle.append(worker)
            self._cond.notify_all()

    def _discard(self, worker: _Worker) -> None:
        worker.kill()
        with self._cond:
            if worker in self._all:
                self._all.remove(worker)
            self._cond.notify_all()

    # ----------------------------------------------------------------- comparison
    def _verify(self, pairs: list[tuple[str, str]]) -> list[bool]:
        """math-verify verdicts for ``pairs``, split over the workers available now."""
        self._count("verified", len(pairs))
        workers: list[_Worker | None] = list(self._checkout(min(self.workers, len(pairs))))
        chunks = [pairs[i :: len(workers)] for i in range(len(workers))]
        verdicts: list[list[bool]] = [[] for _ in workers]
        errors: list[BaseException] = []

        def run(j: int) -> None:
            try:
                self._run_chunk(workers, j, chunks[j], verdicts)
            except BaseException as e:  # re-raised in the calling thread below
                errors.append(e)

        threads = [threading.Thread(target=run, args=(j,)) for j in range(1, len(workers))]
        for t in threads:
            t.start()
        run(0)  # in the calling thread, so Ctrl-C lands here and is recorded in `errors`
        for t in threads:
            t.join()
        live = [w for w in workers if w is not None]
        if errors:
            # A worker interrupted mid-batch may still write stale answers: never reuse it.
            for worker in live:
                self._discard(worker)
            raise errors[0]
        self._checkin(live)
        out: list[bool] = [False] * len(pairs)
        for j, chunk_verdicts in enumerate(verdicts):
            out[j :: len(workers)] = chunk_verdicts
        return out

    def _run_chunk(
        self, workers: list[_Worker | None], j: int, chunk: list[tuple[str, str]],
        verdicts: list[list[bool]],
    ) -> None:
        """Compare ``chunk`` on ``workers[j]``, replacing the worker after a timeout/crash."""
        done: list[bool] = []
        while len(done) < len(chunk):
            worker = workers[j]
            if worker is None or not worker.alive():
                if worker is not None:
                    self._discard(worker)
                worker = workers[j] = self._start_worker_replacing()
            rest = chunk[len(done) :]
            try:
                worker.send(rest, self._hang_token)
            except (BrokenPipeError, OSError):
                self._discard(worker)
                workers[j] = None
                self._count("crashes")
                done.append(False)  # the pair it was about to receive is charged
                continue
            for _ in rest:
                try:
                    message = worker.read_message(time.monotonic() + self.timeout_s)
                except (TimeoutError, EOFError, ValueError) as e:
                    self._count("timeouts" if isinstance(e, TimeoutError) else "crashes")
                    self._discard(worker)
                    workers[j] = None
                    done.append(False)
                    break
                result = message.get("r")
                if result in ("parse_failure", "error"):
                    self._count("parse_failures")
                done.append(result == "eq")
        verdicts[j] = done

    def _start_worker_replacing(self) -> _Worker:
        """Start a worker in place of one just discarded (the slot is free again)."""
        with self._cond:
            if self._closed:
                raise RuntimeError("AnswerChecker is closed")
            self._starting += 1
        try:
            return self._start_worker()
        finally:
            with self._cond:
                self._starting -= 1

    def _count(self, key: str, n: int = 1) -> None:
        with self._cond:
            self._stats[key] += n


_default_lock = threading.Lock()
_default: AnswerChecker | None = None


def default_checker() -> AnswerChecker:
    """The process-wide checker used by ``is_equivalent`` (timeout 5 s, 1 worker; lazy)."""
    global _default
    with _default_lock:
        if _default is None or _default._closed:
            _default = AnswerChecker()
        return _default


def is_equivalent(a: str, b: str) -> bool:
    """Whether answer ``b`` is equivalent to reference ``a`` (fast path, then math-verify).

    Never raises for any string content: a timeout or parse failure is "not equivalent".
    """
    return default_checker().equivalent(a, b)
