"""Hostile programs: each is contained, and graded as a failed sample with the right status.

Every attack runs twice where the OS allows: with the audit hook (the normal setup) and
without it (``audit_hook=False``), which shows the OS layers (namespaces, jail, uid
drop, rlimits) contain it on their own. Cases run concurrently to keep the suite fast.
"""

from __future__ import annotations

import os
import socket
import tempfile
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from mgrpo.data.fetched import is_present
from mgrpo.eval.sandbox import grade_mbpp_plus, load_mbpp_plus, run_program
from mgrpo.eval.sandbox.runner import SANDBOX_UID_BASE

IS_ROOT = os.geteuid() == 0
REPO = Path(__file__).resolve().parents[2]
SECRET = "mgrpo-test-secret-7f3a9c"
TIMEOUT_S = 2.0  # wall limit for the attacks that must end in "timeout"
# Attacks that end by themselves get a generous limit so that a slow start on a loaded
# host is not mistaken for a timeout; two are slow by nature (touching ~1 GB page by
# page; 32 processes printing tracebacks).
TIMEOUT_BOUND = {"infinite_loop", "long_sleep", "huge_output"}
SLOW_TIMEOUT_S = 20.0


def _limit(name: str) -> float:
    return TIMEOUT_S if name in TIMEOUT_BOUND else SLOW_TIMEOUT_S


NO_HOOK_STATUS = {"fork_bomb": {"error", "timeout"}}


def _attacks(port: int, victim: str) -> dict[str, tuple[str, set[str]]]:
    parent = os.getpid()
    return {
        "infinite_loop": ("while True:\n    pass", {"timeout"}),
        "memory_bomb": ("x = bytearray(64 * 1024**3)", {"memory"}),
        "memory_growth": ("l = []\nwhile True:\n    l.append(bytearray(10**8))", {"memory"}),
        "fork_bomb": ("import os\nwhile True:\n    os.fork()", {"error"}),
        "write_tmp": (f"open('/tmp/mgrpo_evil_{parent}', 'w').write('pwned')", {"error"}),
        "write_repo": (f"open('{REPO}/mgrpo_evil_{parent}', 'w').write('pwned')", {"error"}),
        "read_repo": (f"print(open('{REPO}/pyproject.toml').read())", {"error"}),
        "env_secret": (
            "import os\nprint(os.environ.get('MGRPO_TEST_SECRET'))\n"
            f"print(open('/proc/{parent}/environ').read())",
            {"error"},
        ),
        "network": (
            f"import socket\ns = socket.create_connection(('127.0.0.1', {port}), timeout=1)\n"
            "s.sendall(b'pwned')",
            {"error"},
        ),
        "long_sleep": ("import time\ntime.sleep(1000)", {"timeout"}),
        "huge_output": ("while True:\n    print('x' * 100000)", {"timeout"}),
        "kill_parent": (f"import os, signal\nos.kill({parent}, signal.SIGKILL)", {"error"}),
        "delete_files": (
            f"import os, shutil\nos.remove('{victim}')\nshutil.rmtree('{REPO}/tests')",
            {"error"},
        ),
    }


@pytest.fixture(scope="module")
def attack_results():
    os.environ["MGRPO_TEST_SECRET"] = SECRET  # the child must not see it
    server = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    server.bind(("127.0.0.1", 0))
    server.listen(8)
    server.settimeout(0.2)
    fd, victim = tempfile.mkstemp(prefix="mgrpo-victim-")
    os.close(fd)
    attacks = _attacks(server.getsockname()[1], victim)
    jobs = [(name, hook) for name in attacks for hook in ((True, False) if IS_ROOT else (True,))]
    try:
        with ThreadPoolExecutor(max_workers=6) as pool:
            futures = {
                job: pool.submit(
                    run_program,
                    attacks[job[0]][0],
                    timeout_s=_limit(job[0]),
                    audit_hook=job[1],
                    output_limit=1 << 16,
                )
                for job in jobs
            }
            results = {job: f.result() for job, f in futures.items()}
        try:
            conn, _ = server.accept()
            conn.close()
            connected = True
        except TimeoutError:
            connected = False
        victim_alive = os.path.exists(victim)
    finally:
        server.close()
        os.environ.pop("MGRPO_TEST_SECRET", None)
        if os.path.exists(victim):
            os.remove(victim)
    return {
        "attacks": attacks,
        "results": results,
        "connected": connected,
        "victim_alive": victim_alive,
    }


ATTACK_NAMES = list(_attacks(0, "/nonexistent"))


@pytest.mark.parametrize("hook", [True, False], ids=["hook", "os-layers-only"])
@pytest.mark.parametrize("name", ATTACK_NAMES)
def test_attack_contained(attack_results, name, hook):
    if (name, hook) not in attack_results["results"]:
        pytest.skip("OS layers need root")
    r = attack_results["results"][(name, hook)]
    expected = attack_results["attacks"][name][1]
    if not hook:
        expected = NO_HOOK_STATUS.get(name, expected)
    assert r.status in expected, (name, hook, r.status, r.stderr[-400:])
    assert SECRET not in r.stdout and SECRET not in r.stderr
    assert "[project]" not in r.stdout  # repo file not read
    assert r.wall_s < _limit(name) + 3.0
    if name == "huge_output":
        assert r.truncated and len(r.stdout) == 1 << 16


def test_side_effects_absent(attack_results):
    parent = os.getpid()
    assert not attack_results["connected"], "a sandboxed program reached 127.0.0.1"
    assert attack_results["victim_alive"], "a sandboxed program deleted a host file"
    assert not os.path.exists(f"/tmp/mgrpo_evil_{parent}")
    assert not os.path.exists(REPO / f"mgrpo_evil_{parent}")
    assert (REPO / "tests" / "sandbox").is_dir()


@pytest.mark.skipif(not IS_ROOT, reason="dedicated sandbox uids exist only as root")
def test_no_sandbox_process_survives(attack_results):
    uids = {
        int(layer[len("uid-drop(") : -1])
        for r in attack_results["results"].values()
        for layer in r.layers
        if layer.startswith("uid-drop(")
    }
    assert uids and min(uids) >= SANDBOX_UID_BASE
    survivors = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                if os.stat(f"/proc/{entry}").st_uid in uids:
                    survivors.append(entry)
            except OSError:
                continue
    assert not survivors


# ------------------------------------------------------------ graded as failed samples

SIMILAR = "def similar_elements(a, b):\n"


def _response(body: str) -> str:
    return f"Here is my solution.\n```python\n{body}\n```\n"


GRADED = {
    "infinite_loop": (SIMILAR + "    while True:\n        pass", "timeout"),
    "memory_bomb": (SIMILAR + "    return bytearray(64 * 1024**3)", "memory"),
    "fork_bomb": ("import os\n" + SIMILAR + "    while True:\n        os.fork()", "runtime_error"),
    "write_outside": (
        SIMILAR + "    open('/tmp/mgrpo_evil_g', 'w').write('x')\n"
        "    return tuple(set(a) & set(b))",
        "runtime_error",
    ),
    "read_secret": (
        "import os\n" + SIMILAR + "    return os.environ['MGRPO_TEST_SECRET']",
        "runtime_error",
    ),
    "network": (
        "import socket\n" + SIMILAR + "    socket.create_connection(('127.0.0.1', 1))",
        "runtime_error",
    ),
    "long_sleep": ("import time\n" + SIMILAR + "    time.sleep(1000)", "timeout"),
    "wrong_answer": (SIMILAR + "    return tuple(set(a) | set(b))", "wrong_answer"),
    "rigged_eq": (
        "class Any:\n    def __eq__(self, other):\n        return True\n"
        "    __hash__ = object.__hash__\n" + SIMILAR + "    return Any()",
        "wrong_answer",
    ),
    "spoof_exit": (
        "import os, sys\nprint('all tests passed')\n"
        "open('results.jsonl', 'a').write('{\"loaded\": true}\\n')\nos._exit(0)",
        "load_error|runtime_error",
    ),
    "missing_entry": ("def other(a, b):\n    return a", "load_error"),
    "no_code": (None, "no_code"),
    "syntax_error": (SIMILAR + "    return (", "syntax_error"),
}


@pytest.fixture(scope="module")
def graded():
    if not is_present("mbppplus"):  # not in the wheel; tests never fetch it
        pytest.skip("mbppplus.jsonl is not in $MGRPO_DATA_DIR")
    problem = next(p for p in load_mbpp_plus() if p["task_id"] == "Mbpp/2")
    grade_mbpp_plus(_response(problem["canonical_solution"]), problem)  # warm the cache
    os.environ["MGRPO_TEST_SECRET"] = SECRET
    try:
        with ThreadPoolExecutor(max_workers=6) as pool:
            futures = {
                name: pool.submit(
                    grade_mbpp_plus,
                    "no code here" if body is None else _response(body),
                    problem,
                    timeout_s=TIMEOUT_S + 2 if name in TIMEOUT_BOUND else SLOW_TIMEOUT_S,
                )
                for name, (body, _) in GRADED.items()
            }
            return {name: f.result() for name, f in futures.items()}
    finally:
        os.environ.pop("MGRPO_TEST_SECRET", None)


@pytest.mark.parametrize("name", list(GRADED))
def test_graded_as_failed_sample(graded, name):
    verdict = graded[name]
    assert not verdict.passed
    assert verdict.status in GRADED[name][1].split("|"), verdict
    assert verdict.n_tests > 0
    assert SECRET not in verdict.detail
