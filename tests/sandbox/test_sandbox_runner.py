"""run_program basics: I/O, exit statuses, environment, work dir, limits, layers."""

from __future__ import annotations

import os

import pytest

from mgrpo.eval.sandbox import STATUSES, RunResult, isolation_layers, run_program

IS_ROOT = os.geteuid() == 0


def test_stdout_stdin_and_ok_status():
    r = run_program(
        "import sys\nname = input()\nprint('hello', name)\nprint('e', file=sys.stderr)",
        stdin="world\n",
    )
    assert isinstance(r, RunResult)
    assert (r.status, r.returncode) == ("ok", 0)
    assert r.stdout == "hello world\n"
    assert r.stderr == "e\n"
    assert r.wall_s > 0 and not r.truncated


@pytest.mark.parametrize(
    ("source", "status"),
    [
        ("raise ValueError('boom')", "error"),
        ("import sys; sys.exit(3)", "error"),
        ("x = bytearray(8 * 1024**3)", "memory"),
        ("import os, signal; os.kill(os.getpid(), signal.SIGSEGV)", "killed"),
        ("while True: pass", "timeout"),
    ],
)
def test_status_mapping(source, status):
    r = run_program(source, timeout_s=2.0)
    assert r.status == status, (r.status, r.stderr[-300:])
    assert r.status in STATUSES


def test_error_keeps_traceback():
    r = run_program("def f():\n    raise KeyError('k')\nf()")
    assert r.status == "error" and r.returncode == 1
    assert "KeyError" in r.stderr and "__main__.py" in r.stderr


def test_cpu_limit_is_a_timeout():
    r = run_program("while True: pass", timeout_s=30.0, cpu_s=1.0)
    assert r.status == "timeout"
    assert r.wall_s < 30.0


def test_minimal_environment_and_fresh_workdir():
    src = (
        "import os, json\n"
        "print(json.dumps({'env': sorted(os.environ), 'cwd': os.getcwd(),"
        " 'home': os.environ['HOME'], 'files': sorted(os.listdir('.'))}))\n"
        "open('left_behind.txt', 'w').write('x')\n"
    )
    import json

    first = json.loads(run_program(src).stdout)
    second = json.loads(run_program(src).stdout)
    assert set(first["env"]) <= {
        "PATH",
        "LANG",
        "LC_ALL",
        "HOME",
        "TMPDIR",
        "PYTHONHASHSEED",
        "PYTHONDONTWRITEBYTECODE",
        "PYTHONIOENCODING",
        "OMP_NUM_THREADS",
        "OPENBLAS_NUM_THREADS",
        "MKL_NUM_THREADS",
    }
    assert first["home"] == first["cwd"] != second["cwd"]
    assert first["files"] == second["files"] == ["__main__.py"]  # nothing left from run 1
    assert not os.path.exists(first["cwd"])  # removed afterwards


def test_files_in_and_out_and_symlink_refused():
    r = run_program(
        "import os\ndata = open('in.txt').read()\nopen('out.txt', 'w').write(data.upper())\n"
        "os.symlink('/etc/hostname', 'link.txt')\n",
        files={"in.txt": "abc"},
        read_files=("out.txt", "link.txt", "missing.txt"),
    )
    assert r.status == "ok", r.stderr
    assert r.files == {"out.txt": b"ABC"}


def test_output_is_capped():
    r = run_program("print('x' * 5000)", output_limit=100)
    assert r.status == "ok" and r.truncated and r.stdout == "x" * 100


def test_stdlib_and_hash_seed_fixed():
    src = "import collections, json, re, math, heapq\nprint(list({'a','b','c','d','e'}))"
    assert run_program(src).stdout == run_program(src).stdout


@pytest.mark.parametrize("bad", [{"timeout_s": 0}, {"memory_mb": -1}, {"cpu_s": 0}])
def test_bad_arguments(bad):
    with pytest.raises(ValueError):
        run_program("pass", **bad)
    with pytest.raises(ValueError, match="files"):
        run_program("pass", files={"../x": "y"})


@pytest.mark.skipif(not IS_ROOT, reason="namespaces/jail/uid drop need root")
def test_all_layers_active_as_root():
    layers = " ".join(isolation_layers())
    for name in (
        "net-namespace",
        "chroot-jail",
        "pid-namespace",
        "uid-drop",
        "NPROC",
        "audit-hook",
        "no-new-privs",
    ):
        assert name in layers, layers


def test_unisolated_mode_still_has_limits_and_hook():
    r = run_program("open('/tmp/mgrpo_evil_unisolated', 'w')", isolate=False)
    assert r.status == "error" and "PermissionError" in r.stderr
    assert not os.path.exists("/tmp/mgrpo_evil_unisolated")
    assert "audit-hook" in r.layers and not any("namespace" in x for x in r.layers)
