"""Run untrusted Python (model output) in an isolated child process.

``run_program(source, stdin=..., timeout_s=..., memory_mb=..., cpu_s=...)`` writes the
source into a fresh temporary work directory and runs it with the interpreter of this
process through the trusted ``_bootstrap.py`` (see its docstring for the child side).
Model output is never ``eval``/``exec``-ed in this process.

Isolation layers (which ones took effect is in ``RunResult.layers``; on the reference
machine, a root VM with kernel 6.x, all of them do):

=============================  =============================================  ==========
layer                           stops                                          needs
=============================  =============================================  ==========
new session / process group     stray children: the whole group is SIGKILLed  always
                                after the run (and on the wall timeout)
minimal environment             inherited secrets: only PATH, LANG, HOME,      always
                                TMPDIR, PYTHONHASHSEED, *_NUM_THREADS
fresh temp dir as cwd/HOME      leftovers between runs (removed afterwards)    always
rlimits AS, CPU, FSIZE,         memory bombs, CPU spins, huge files, fd leaks  always
NOFILE, CORE
wall timeout + output caps      sleeps / hangs, huge stdout/stderr             always
net/IPC/UTS namespaces          any network use, 127.0.0.1 included           root or userns
chroot jail (read-only tmpfs    reading or writing the host filesystem: only   root
root, read-only binds of the    the Python installation, system libraries and
Python install + system libs)   the work dir exist; only the work dir is
                                writable; /proc is absent
PID namespace + PDEATHSIG       fork bombs / daemons outliving the run, seeing root or userns
                                or signalling host processes
dedicated uid/gid, no groups,   killing or ptracing our processes, reading     root
RLIMIT_NPROC, no_new_privs      /proc/<pid>/environ, fork bombs (per-uid cap)
audit hook (PEP 578)            fork/exec, sockets, ctypes, signals to others, always
                                opens outside the work dir (defence in depth:
                                bypassable in principle, not a boundary alone)
=============================  =============================================  ==========

Not isolated: CPU time is shared with the host (no cgroup quota), so a program can slow
other work down for up to ``timeout_s``; memory is capped per process by RLIMIT_AS
(``memory_mb``), not per run or per host: no cgroup is used (this library does not
touch the cgroup tree it runs in), so N concurrent runs may together reserve
N x ``memory_mb``, and without the audit hook a program could spread over up to
``nproc`` processes. Without root (and without unprivileged user namespaces) there is
no network block, no jail and no uid change, only the audit hook, the rlimits and the
process-group kill. The hash seed is fixed (``PYTHONHASHSEED=0``) so that set iteration
order matches between a reference run and a candidate run.
"""

from __future__ import annotations

import itertools
import json
import math
import os
import selectors
import shutil
import signal
import site
import stat
import subprocess
import sys
import sysconfig
import tempfile
import threading
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from mgrpo.eval.sandbox import _bootstrap

DEFAULT_TIMEOUT_S = 10.0
DEFAULT_MEMORY_MB = 1024
DEFAULT_OUTPUT_LIMIT = 1 << 20  # bytes kept per stream (stdout, stderr)
DEFAULT_FILE_LIMIT = 64 << 20  # RLIMIT_FSIZE and the cap on files read back
DEFAULT_NPROC = 32  # processes + threads for the dedicated uid
DEFAULT_NOFILE = 256
SANDBOX_UID_BASE = 1_500_000_000  # dedicated uids/gids, never used by real accounts
SANDBOX_UID_SPAN = 1 << 24
SYSTEM_DIRS = ("/usr", "/lib", "/lib64", "/lib32", "/bin", "/sbin")
STATUSES = ("ok", "error", "timeout", "memory", "killed")
_KILL_GRACE_S = 2.0
_uid_counter = itertools.count()
_uid_lock = threading.Lock()


class SandboxError(RuntimeError):
    """The sandbox itself could not start (an infrastructure fault, not a wrong program)."""


@dataclass
class RunResult:
    """Outcome of one sandboxed run.

    status: "ok" (exit 0) | "error" (non-zero exit, uncaught exception) | "timeout" (wall
    or CPU limit) | "memory" (MemoryError / address-space limit) | "killed" (died by a
    signal). ``stdout``/``stderr`` are decoded UTF-8 (replacement on bad bytes), cut to
    the output limit (``truncated`` says so). ``files``: requested files read back from
    the work dir (missing ones absent). ``layers``: isolation layers that took effect.
    """

    status: str
    returncode: int | None
    stdout: str
    stderr: str
    wall_s: float
    truncated: bool = False
    files: dict[str, bytes] = field(default_factory=dict)
    layers: tuple[str, ...] = ()


def _next_uid() -> int:
    with _uid_lock:
        n = next(_uid_counter)
    return SANDBOX_UID_BASE + ((os.getpid() * 4099 + n) % SANDBOX_UID_SPAN)


def _world_traversable(path: str) -> bool:
    """True when a non-root uid can reach and read ``path`` (every ancestor o+x)."""
    path = os.path.realpath(path)
    while True:
        try:
            mode = os.stat(path).st_mode
        except OSError:
            return False
        if not mode & stat.S_IXOTH:
            return False
        parent = os.path.dirname(path)
        if parent == path:
            return True
        path = parent


def _python_roots() -> tuple[str, ...]:
    """Directories the interpreter needs: prefixes, stdlib, site-packages (deduplicated)."""
    cands = {sys.prefix, sys.base_prefix, sys.exec_prefix, sys.base_exec_prefix}
    cands.add(os.path.dirname(os.path.dirname(os.path.realpath(sys.executable))))
    for key in ("stdlib", "platstdlib", "purelib", "platlib"):
        p = sysconfig.get_paths().get(key)
        if p:
            cands.add(p)
    cands.update(getattr(site, "getsitepackages", list)())
    real = sorted({os.path.realpath(p) for p in cands if p and os.path.isdir(p)})
    roots: list[str] = []
    for p in real:  # drop dirs already covered by a parent in the list
        if not any(p.startswith(r.rstrip("/") + "/") for r in roots):
            roots.append(p)
    return tuple(roots)


def _minimal_env(workdir: str) -> dict[str, str]:
    return {
        "PATH": "/usr/local/bin:/usr/bin:/bin",
        "LANG": "C.UTF-8",
        "LC_ALL": "C.UTF-8",
        "HOME": workdir,
        "TMPDIR": workdir,
        "PYTHONHASHSEED": "0",
        "PYTHONDONTWRITEBYTECODE": "1",
        "PYTHONIOENCODING": "utf-8",
        "OMP_NUM_THREADS": "1",
        "OPENBLAS_NUM_THREADS": "1",
        "MKL_NUM_THREADS": "1",
    }


def _kill_group(pgid: int) -> None:
    try:
        os.killpg(pgid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass


def _kill_uid(uid: int) -> None:
    """SIGKILL every process still running as the dedicated sandbox uid (root only)."""
    try:
        entries = os.listdir("/proc")
    except OSError:
        return
    for entry in entries:
        if not entry.isdigit():
            continue
        try:
            if os.stat(f"/proc/{entry}").st_uid == uid:
                os.kill(int(entry), signal.SIGKILL)
        except (OSError, ValueError):
            continue


def _read_back(workdir: str, name: str, limit: int) -> bytes | None:
    """Read a file the program wrote, refusing symlinks and non-regular files."""
    path = os.path.join(workdir, name)
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
    except OSError:
        return None
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            return None
        with os.fdopen(fd, "rb", closefd=False) as f:
            return f.read(limit)
    finally:
        os.close(fd)


def _pump(proc: subprocess.Popen, stdin: bytes, status_r: int, deadline: float, limit: int):
    """Feed stdin, drain stdout/stderr/status until EOF or the deadline (no deadlocks)."""
    sel = selectors.DefaultSelector()
    bufs = {"out": bytearray(), "err": bytearray(), "status": bytearray()}
    caps = {"out": limit, "err": limit, "status": 1 << 16}
    truncated = False
    for name, fobj in (("out", proc.stdout), ("err", proc.stderr)):
        os.set_blocking(fobj.fileno(), False)
        sel.register(fobj.fileno(), selectors.EVENT_READ, name)
    os.set_blocking(status_r, False)
    sel.register(status_r, selectors.EVENT_READ, "status")
    view, pos = memoryview(stdin), 0
    if stdin:
        os.set_blocking(proc.stdin.fileno(), False)
        sel.register(proc.stdin.fileno(), selectors.EVENT_WRITE, "in")
    else:
        proc.stdin.close()
    timed_out = False
    while sel.get_map():
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            timed_out = True
            break
        for key, _ in sel.select(timeout=min(remaining, 0.5)):
            if key.data == "in":
                try:
                    pos += os.write(key.fd, view[pos : pos + 65536])
                except (BrokenPipeError, OSError):
                    pos = len(view)
                if pos >= len(view):
                    sel.unregister(key.fd)
                    proc.stdin.close()
                continue
            try:
                chunk = os.read(key.fd, 65536)
            except BlockingIOError:
                continue
            if not chunk:
                sel.unregister(key.fd)
                continue
            buf = bufs[key.data]
            room = caps[key.data] - len(buf)
            if room > 0:
                buf += chunk[:room]
            if len(chunk) > max(room, 0):
                truncated = True
    sel.close()
    return bufs, truncated, timed_out


def run_program(
    source: str,
    *,
    stdin: str = "",
    timeout_s: float = DEFAULT_TIMEOUT_S,
    memory_mb: int = DEFAULT_MEMORY_MB,
    cpu_s: float | None = None,
    files: Mapping[str, str | bytes] | None = None,
    read_files: Sequence[str] = (),
    output_limit: int = DEFAULT_OUTPUT_LIMIT,
    file_limit: int = DEFAULT_FILE_LIMIT,
    nproc: int = DEFAULT_NPROC,
    audit_hook: bool = True,
    isolate: bool = True,
) -> RunResult:
    """Run ``source`` as ``__main__`` in the sandbox and return its :class:`RunResult`.

    Args:
        stdin: text fed to the program's standard input.
        timeout_s: wall-clock limit (startup included); on expiry the whole process
            group (and PID namespace) is SIGKILLed and the status is "timeout".
        memory_mb: RLIMIT_AS of the program (MemoryError beyond it -> "memory").
        cpu_s: RLIMIT_CPU in seconds, rounded up (default ``ceil(timeout_s) + 1``);
            exceeding it -> "timeout".
        files: extra files (name relative to the work dir -> content) written first.
        read_files: names of files to read back after the run (symlinks refused,
            at most ``file_limit`` bytes each) into ``RunResult.files``.
        output_limit: bytes of stdout and of stderr kept (the rest is drained, dropped).
        nproc: RLIMIT_NPROC for the dedicated uid (threads count).
        audit_hook: install the audit-hook layer (turn off only to test the OS layers).
        isolate: try namespaces, jail and uid drop (off: rlimits + hook + group kill).

    Raises:
        ValueError: on a non-positive limit. SandboxError: the child failed to set up.
    """
    if not isinstance(source, str):
        raise ValueError(f"source must be a str, got {type(source).__name__}")
    for name, value in (("timeout_s", timeout_s), ("memory_mb", memory_mb)):
        if not value or value <= 0 or not math.isfinite(value):
            raise ValueError(f"{name} must be a positive finite number, got {value!r}")
    if cpu_s is not None and (cpu_s <= 0 or not math.isfinite(cpu_s)):
        raise ValueError(f"cpu_s must be positive, got {cpu_s!r}")
    cpu_limit = int(math.ceil(cpu_s)) if cpu_s is not None else int(math.ceil(timeout_s)) + 1
    is_root = os.geteuid() == 0
    uid = _next_uid() if is_root and isolate else None
    base = tempfile.mkdtemp(prefix="mgrpo-sandbox-")
    workdir = os.path.join(base, "work")
    jail = os.path.join(base, "jail")
    status_r, status_w = os.pipe()
    proc = None
    try:
        os.mkdir(workdir, 0o700)
        os.mkdir(jail, 0o700)
        program = "__main__.py"
        for name, content in {**(files or {}), program: source}.items():
            if os.path.isabs(name) or ".." in name.split("/"):
                raise ValueError(f"files: name {name!r} must be relative to the work dir")
            data = content.encode("utf-8") if isinstance(content, str) else bytes(content)
            with open(os.path.join(workdir, name), "wb") as f:
                f.write(data)
        roots = _python_roots()
        if uid is not None:
            for dirpath, _, names in os.walk(workdir):
                os.chown(dirpath, uid, uid)
                for n in names:
                    os.chown(os.path.join(dirpath, n), uid, uid)
        cfg = {
            "workdir": workdir,
            "program": program,
            "status_fd": status_w,
            "namespaces": isolate,
            "pid_namespace": isolate,
            "jail": jail if isolate and is_root else None,
            "binds": [d for d in (*SYSTEM_DIRS, *roots) if os.path.lexists(d)],
            "read_roots": list(roots) + ["/dev/null", "/dev/zero", "/dev/urandom"],
            "uid": uid,
            "gid": uid,
            "prefix_world_readable": all(_world_traversable(r) for r in roots),
            "audit_hook": audit_hook,
            "limits": {
                "as_bytes": int(memory_mb) << 20,
                "cpu_s": cpu_limit,
                "fsize_bytes": int(file_limit),
                "nofile": DEFAULT_NOFILE,
                "nproc": int(nproc),
            },
        }
        cfg_path = os.path.join(base, "config.json")
        with open(cfg_path, "w") as f:
            json.dump(cfg, f)
        cmd = [sys.executable, "-s", "-B"]
        if sys.version_info >= (3, 11):
            cmd.append("-P")
        cmd += [_bootstrap.__file__, cfg_path]
        start = time.monotonic()
        proc = subprocess.Popen(
            cmd,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            cwd=workdir,
            env=_minimal_env(workdir),
            start_new_session=True,
            close_fds=True,
            pass_fds=(status_w,),
        )
        os.close(status_w)
        status_w = -1
        bufs, truncated, timed_out = _pump(
            proc, stdin.encode("utf-8"), status_r, start + timeout_s, output_limit
        )
        if timed_out:
            _kill_group(proc.pid)
        try:
            returncode = proc.wait(timeout=_KILL_GRACE_S)
        except subprocess.TimeoutExpired:
            _kill_group(proc.pid)
            returncode = proc.wait()
        wall = time.monotonic() - start
        _kill_group(proc.pid)
        if uid is not None:
            _kill_uid(uid)
        report = _parse_status(bytes(bufs["status"]))
        stderr = bufs["err"].decode("utf-8", "replace")
        if report is None and not timed_out:
            raise SandboxError(
                f"sandbox child failed before running the program (exit {returncode}): "
                f"{stderr.strip()[-2000:]}"
            )
        read = {}
        for name in read_files:
            data = _read_back(workdir, name, file_limit)
            if data is not None:
                read[name] = data
        return RunResult(
            status=_status(returncode, timed_out, stderr),
            returncode=None if timed_out else returncode,
            stdout=bufs["out"].decode("utf-8", "replace"),
            stderr=stderr,
            wall_s=wall,
            truncated=truncated,
            files=read,
            layers=tuple(report["layers"]) if report else (),
        )
    finally:
        if proc is not None:
            for stream in (proc.stdin, proc.stdout, proc.stderr):
                if stream is not None and not stream.closed:
                    stream.close()
            if proc.poll() is None:
                _kill_group(proc.pid)
                proc.wait()
        for fd in (status_r, status_w):
            if fd >= 0:
                try:
                    os.close(fd)
                except OSError:
                    pass
        shutil.rmtree(base, ignore_errors=True)


def _parse_status(raw: bytes) -> dict | None:
    try:
        report = json.loads(raw.decode("utf-8")) if raw else None
    except (UnicodeDecodeError, json.JSONDecodeError):
        return None
    return report if isinstance(report, dict) and report.get("ready") else None


def _status(returncode: int, timed_out: bool, stderr: str) -> str:
    """Map an exit to a RunResult status (see RunResult)."""
    if timed_out:
        return "timeout"
    if returncode == 0:
        return "ok"
    if returncode == _bootstrap.EXIT_MEMORY:
        return "memory"
    signum = -returncode if returncode < 0 else returncode - 128 if returncode > 128 else 0
    if signum == signal.SIGXCPU:  # RLIMIT_CPU soft limit
        return "timeout"
    if signum > 0:
        return "killed"
    last = stderr.strip().splitlines()[-1:]
    if last and last[0].startswith("MemoryError"):
        return "memory"
    return "error"


def isolation_layers(timeout_s: float = 10.0) -> tuple[str, ...]:
    """The isolation layers that take effect on this machine (runs a trivial program)."""
    return run_program("pass", timeout_s=timeout_s).layers
