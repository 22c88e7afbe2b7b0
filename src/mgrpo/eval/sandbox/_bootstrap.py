"""Child-side sandbox bootstrap: trusted code that runs BEFORE any untrusted code.

Started by :func:`mgrpo.eval.sandbox.runner.run_program` as
``python -s -B [-P] _bootstrap.py CONFIG.json`` with a minimal environment, in a new
session, with the work directory as cwd. It is never imported by the parent; it only
uses the standard library. Steps (each layer is best effort unless marked fatal, and
the layers that took effect are reported to the parent on the status pipe):

1. Namespaces (needs root or unprivileged user namespaces): ``unshare`` of mount, net,
   IPC, UTS and PID namespaces. The new net namespace has only a downed loopback, so no
   connection anywhere (127.0.0.1 included) is possible.
2. Jail (needs the mount namespace and root): a read-only tmpfs root holding read-only
   bind mounts of the system library dirs and the Python installation, /dev/{null,zero,
   random,urandom}, and the work directory (the only writable path); then ``chroot``.
   The rest of the host filesystem (the repository, /root, /tmp, /proc) is not visible.
3. PID namespace: the outer process forks an init (pid 1) that forks the worker; when
   the init exits (or the outer dies: PDEATHSIG), the kernel kills every process in
   the namespace.
4. Worker (fatal on failure): resource limits (RLIMIT_AS/CPU/FSIZE/NOFILE/CORE, and
   RLIMIT_NPROC when the uid is dropped), drop to a dedicated unprivileged uid/gid with
   no supplementary groups (only when running as root and the interpreter stays
   reachable), PR_SET_NO_NEW_PRIVS, PR_SET_PDEATHSIG=SIGKILL, umask 077.
5. Audit hook (PEP 578, defence in depth only; a determined attacker with memory
   corruption can bypass it): forbids process creation, signals to other processes,
   sockets, ctypes, writes outside the work dir and reads outside the work dir and
   the Python installation.
6. Reports "ready" + the layer list on the status fd, closes it, then runs the program
   file as ``__main__``.
"""

from __future__ import annotations

import json
import os
import sys

# Exit codes reserved by the bootstrap (the program's own exit code passes through).
EXIT_SETUP_FAILED = 121
EXIT_MEMORY = 120
EXIT_UNCAUGHT = 1

CLONE_NEWNS = 0x00020000
CLONE_NEWUTS = 0x04000000
CLONE_NEWIPC = 0x08000000
CLONE_NEWUSER = 0x10000000
CLONE_NEWPID = 0x20000000
CLONE_NEWNET = 0x40000000
MS_RDONLY = 1
MS_NOSUID = 2
MS_NODEV = 4
MS_REMOUNT = 32
MS_BIND = 4096
MS_REC = 16384
MS_PRIVATE = 1 << 18
PR_SET_PDEATHSIG = 1
PR_SET_NO_NEW_PRIVS = 38
DEVICES = ("null", "zero", "random", "urandom")

_FORBIDDEN_EVENTS = frozenset(
    {
        "os.fork",
        "os.forkpty",
        "os.posix_spawn",
        "os.spawn",
        "os.exec",
        "os.system",
        "os.startfile",
        "subprocess.Popen",
        "pty.spawn",
        "os.setuid",
        "os.setgid",
        "socket.__new__",
        "socket.connect",
        "socket.bind",
        "socket.sendto",
        "socket.sendmsg",
        "socket.getaddrinfo",
        "socket.gethostbyname",
        "socket.gethostbyaddr",
        "socket.getnameinfo",
        "os.chroot",
        "os.mknod",
        "resource.prlimit",
        "sys.remote_exec",
        "os.killpg",
        "signal.pthread_kill",
    }
)
_FORBIDDEN_MODULES = frozenset(
    {"ctypes", "_ctypes", "_posixsubprocess", "multiprocessing", "_multiprocessing", "cffi"}
)
_PATH_WRITE_EVENTS = {  # event -> indices of path arguments that must be inside the work dir
    "os.remove": (0,),
    "os.rename": (0, 1),
    "os.rmdir": (0,),
    "os.mkdir": (0,),
    "os.chmod": (0,),
    "os.chown": (0,),
    "os.symlink": (1,),
    "os.link": (0, 1),
    "os.truncate": (0,),
    "os.utime": (0,),
    "shutil.rmtree": (0,),
    "shutil.copyfile": (1,),
    "shutil.copytree": (1,),
    "shutil.move": (0, 1),
    "os.setxattr": (0,),
    "os.removexattr": (0,),
    "os.chflags": (0,),
}
_PATH_READ_EVENTS = {"os.listdir": (0,), "os.scandir": (0,), "glob.glob": (0,), "os.chdir": (0,)}


def _libc():
    import ctypes

    return ctypes, ctypes.CDLL(None, use_errno=True)


def _check(ctypes, rc: int, what: str) -> None:
    if rc != 0:
        err = ctypes.get_errno()
        raise OSError(err, f"{what}: {os.strerror(err)}")


def _mount(ctypes, libc, src, dst, fstype, flags, data=None) -> None:
    enc = [None if x is None else os.fsencode(x) for x in (src, dst, fstype, data)]
    _check(
        ctypes, libc.mount(enc[0], enc[1], enc[2], ctypes.c_ulong(flags), enc[3]), f"mount {dst}"
    )


def _build_jail(ctypes, libc, cfg: dict) -> None:
    """Read-only tmpfs root + read-only binds + writable work dir, then chroot."""
    jail, workdir = cfg["jail"], cfg["workdir"]
    _mount(ctypes, libc, None, "/", None, MS_REC | MS_PRIVATE)
    _mount(ctypes, libc, "tmpfs", jail, "tmpfs", MS_NOSUID | MS_NODEV, "size=1m,mode=0755")

    def inside(path: str) -> str:
        return os.path.join(jail, path.lstrip("/"))

    for host in cfg["binds"]:
        target = inside(host)
        if os.path.islink(host):  # e.g. /lib -> usr/lib on merged-/usr systems
            os.makedirs(os.path.dirname(target), exist_ok=True)
            if not os.path.lexists(target):
                os.symlink(os.readlink(host), target)
            continue
        if not os.path.isdir(host) or os.path.lexists(target) and os.path.ismount(target):
            continue
        os.makedirs(target, exist_ok=True)
        _mount(ctypes, libc, host, target, None, MS_BIND | MS_REC)
        _mount(
            ctypes,
            libc,
            None,
            target,
            None,
            MS_REMOUNT | MS_BIND | MS_RDONLY | MS_NOSUID | MS_NODEV,
        )
    os.makedirs(inside("/dev"), exist_ok=True)
    for dev in DEVICES:
        target = inside(f"/dev/{dev}")
        open(target, "w").close()
        _mount(ctypes, libc, f"/dev/{dev}", target, None, MS_BIND)
    target = inside(workdir)
    os.makedirs(target, exist_ok=True)
    _mount(ctypes, libc, workdir, target, None, MS_BIND)
    _mount(ctypes, libc, None, target, None, MS_REMOUNT | MS_BIND | MS_NOSUID | MS_NODEV)
    _mount(ctypes, libc, None, jail, None, MS_REMOUNT | MS_RDONLY | MS_NOSUID | MS_NODEV)
    os.chdir(jail)
    os.chroot(".")
    os.chdir(workdir)


def _exit_code(status: int) -> int:
    if os.WIFSIGNALED(status):
        return 128 + os.WTERMSIG(status)
    return os.WEXITSTATUS(status)


def _fork_init(ctypes, libc, status_fd: int) -> None:
    """Outer -> init (pid 1 of the new PID namespace) -> worker. Returns in the worker."""
    import signal

    init = os.fork()
    if init:
        os.close(status_fd)
        _, status = os.waitpid(init, 0)
        os._exit(_exit_code(status))
    libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
    worker = os.fork()
    if worker:
        os.close(status_fd)
        for fd in (0, 1, 2):
            try:
                os.close(fd)
            except OSError:
                pass
        while True:  # reap everything; leave (killing the namespace) when the worker ends
            pid, status = os.wait()
            if pid == worker:
                os._exit(_exit_code(status))


def _set_limits(cfg: dict, drop: bool) -> None:
    import resource

    lim = cfg["limits"]
    pairs = [
        (resource.RLIMIT_AS, lim["as_bytes"], lim["as_bytes"]),
        (resource.RLIMIT_CPU, lim["cpu_s"], lim["cpu_s"] + 1),
        (resource.RLIMIT_FSIZE, lim["fsize_bytes"], lim["fsize_bytes"]),
        (resource.RLIMIT_NOFILE, lim["nofile"], lim["nofile"]),
        (resource.RLIMIT_CORE, 0, 0),
    ]
    if drop:  # per-uid count: only meaningful for our dedicated uid
        pairs.append((resource.RLIMIT_NPROC, lim["nproc"], lim["nproc"]))
    for which, soft, hard in pairs:
        _, old_hard = resource.getrlimit(which)
        if old_hard != resource.RLIM_INFINITY:
            hard = min(hard, old_hard)
            soft = min(soft, hard)
        resource.setrlimit(which, (soft, hard))


def _make_hook(workdir: str, read_roots: tuple[str, ...]):
    """PEP 578 audit hook confining the program (defence in depth, see module doc)."""
    realpath, fspath = os.path.realpath, os.fspath
    write_roots = (workdir, "/dev/null")
    read_ok = (workdir, *read_roots)
    my_pid = os.getpid()
    write_flags = os.O_WRONLY | os.O_RDWR | os.O_CREAT | os.O_TRUNC | os.O_APPEND

    def under(path, roots) -> bool:
        if isinstance(path, int):
            return True  # already-open fd
        try:
            p = realpath(fspath(path) if not isinstance(path, bytes) else os.fsdecode(path))
        except (TypeError, ValueError):
            return False
        return any(p == r or p.startswith(r.rstrip("/") + "/") for r in roots)

    def hook(event: str, args: tuple) -> None:
        if event in _FORBIDDEN_EVENTS or event.startswith("ctypes."):
            raise PermissionError(f"sandbox: {event} is not allowed")
        if event == "open":
            path, mode, flags = args
            if path is None:
                return
            writing = (isinstance(mode, str) and any(c in mode for c in "wax+")) or bool(
                isinstance(flags, int) and flags & write_flags
            )
            if not under(path, write_roots if writing else read_ok):
                raise PermissionError(f"sandbox: open({path!r}) outside the work dir")
        elif event == "import":
            if args[0].split(".")[0] in _FORBIDDEN_MODULES:
                raise PermissionError(f"sandbox: import of {args[0]} is not allowed")
        elif event == "os.kill":
            if args[0] not in (0, my_pid, os.getpid()):
                raise PermissionError("sandbox: signals to other processes are not allowed")
        elif event in _PATH_WRITE_EVENTS:
            for i in _PATH_WRITE_EVENTS[event]:
                if i < len(args) and args[i] is not None and not under(args[i], write_roots):
                    raise PermissionError(f"sandbox: {event} outside the work dir")
        elif event in _PATH_READ_EVENTS:
            for i in _PATH_READ_EVENTS[event]:
                arg = args[i] if i < len(args) else None
                if arg is not None and not under(arg, read_ok):
                    raise PermissionError(f"sandbox: {event} outside the work dir")
        elif event == "object.__setattr__" and args[1] in ("__code__", "__closure__"):
            raise PermissionError("sandbox: code object replacement is not allowed")

    return hook


def main() -> None:
    if sys.path and os.path.dirname(os.path.abspath(__file__)) in (sys.path[0], ""):
        sys.path.pop(0)
    with open(sys.argv[1]) as f:
        cfg = json.load(f)
    status_fd = cfg["status_fd"]
    layers: list[str] = []
    problems: list[str] = []
    ctypes = libc = None
    if cfg["namespaces"] or cfg["jail"] or cfg["pid_namespace"]:
        try:
            ctypes, libc = _libc()
        except (ImportError, OSError) as exc:
            problems.append(f"ctypes: {exc}")
    is_root = os.geteuid() == 0
    netns = pidns = jail = False
    if libc is not None and cfg["namespaces"]:
        flags = CLONE_NEWNS | CLONE_NEWNET | CLONE_NEWIPC | CLONE_NEWUTS
        if cfg["pid_namespace"]:
            flags |= CLONE_NEWPID
        if not is_root:
            flags |= CLONE_NEWUSER
        if libc.unshare(flags) == 0:
            netns, pidns = True, bool(flags & CLONE_NEWPID)
            layers += ["net-namespace", "ipc-uts-namespaces"]
        else:
            problems.append(f"unshare: {os.strerror(ctypes.get_errno())}")
    if netns and is_root and cfg["jail"]:
        try:
            _build_jail(ctypes, libc, cfg)
            jail = True
            layers.append("chroot-jail(read-only fs, only work dir writable)")
        except OSError as exc:
            problems.append(f"jail: {exc}")
            os.chdir(cfg["workdir"])
    if pidns:
        _fork_init(ctypes, libc, status_fd)
        layers.append("pid-namespace")
    # ---- worker (fatal on failure from here) ----
    drop = is_root and cfg["uid"] is not None and (jail or cfg["prefix_world_readable"])
    try:
        _set_limits(cfg, drop)
        layers.append("rlimits(AS,CPU,FSIZE,NOFILE,CORE" + (",NPROC)" if drop else ")"))
        if drop:
            os.setgroups([])
            os.setgid(cfg["gid"])
            os.setuid(cfg["uid"])
            if os.getuid() != cfg["uid"] or os.geteuid() != cfg["uid"]:
                raise OSError("setuid did not take effect")
            layers.append(f"uid-drop({cfg['uid']})")
        if libc is not None:
            import signal

            libc.prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0)
            libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
            layers.append("no-new-privs")
        os.umask(0o077)
        import signal

        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # oversized writes raise OSError(EFBIG)
    except OSError as exc:
        sys.stderr.write(f"sandbox setup failed: {exc}\n")
        os._exit(EXIT_SETUP_FAILED)
    for name in [m for m in sys.modules if m == "ctypes" or m.startswith(("ctypes.", "_ctypes"))]:
        del sys.modules[name]
    ctypes = libc = None
    if cfg["audit_hook"]:
        sys.addaudithook(_make_hook(cfg["workdir"], tuple(cfg["read_roots"])))
        layers.append("audit-hook")
    report = json.dumps({"ready": True, "layers": layers, "problems": problems}).encode()
    os.write(status_fd, report)
    os.close(status_fd)
    _run_program(cfg["program"])


def _run_program(path: str) -> None:
    import builtins
    import traceback
    import types

    with open(path, encoding="utf-8") as f:
        source = f.read()
    module = types.ModuleType("__main__")
    module.__file__ = os.path.abspath(path)
    module.__builtins__ = builtins
    sys.modules["__main__"] = module
    sys.argv = [path]
    try:
        code = compile(source, path, "exec")
        exec(code, module.__dict__)
    except SystemExit:
        raise
    except MemoryError:
        sys.stderr.write("MemoryError\n")
        sys.stderr.flush()
        os._exit(EXIT_MEMORY)
    except BaseException:
        traceback.print_exc()
        sys.stderr.flush()
        sys.exit(EXIT_UNCAUGHT)


if __name__ == "__main__":
    main()
