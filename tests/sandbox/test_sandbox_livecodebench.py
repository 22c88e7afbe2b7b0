"""LiveCodeBench grading on small handmade rows: stdin and functional styles."""

from __future__ import annotations

import base64
import json
import pickle
import zlib
from concurrent.futures import ThreadPoolExecutor

import pytest

from mgrpo.eval.sandbox import grade_livecodebench, load_test_cases
from mgrpo.eval.sandbox.livecodebench import stdout_matches


def _compress(cases: list[dict]) -> str:
    """The lite release's private_test_cases encoding."""
    return base64.b64encode(zlib.compress(pickle.dumps(json.dumps(cases)))).decode()


STDIN_ROW = {
    "question_id": "abc000_a",
    "public_test_cases": json.dumps([{"input": "3 4\n", "output": "7\n", "testtype": "stdin"}]),
    "private_test_cases": _compress(
        [
            {"input": "10 20\n", "output": "30", "testtype": "stdin"},
            {"input": "1000000000 1\n", "output": "1000000001\n", "testtype": "stdin"},
        ]
    ),
    "metadata": "{}",
}
FUNC_ROW = {
    "question_id": "lc-two-sum",
    "starter_code": "class Solution:\n    def twoSum(self, nums: List[int], target: int) -> List[int]:\n",
    "public_test_cases": [
        {"input": "[2, 7, 11, 15]\n9", "output": "[0, 1]", "testtype": "functional"}
    ],
    "private_test_cases": json.dumps(
        [{"input": "[3, 2, 4]\n6", "output": "[1, 2]", "testtype": "functional"}]
    ),
    "metadata": json.dumps({"func_name": "twoSum"}),
}

TWO_SUM = (
    "class Solution:\n    def twoSum(self, nums: List[int], target: int) -> List[int]:\n"
    "        seen = {}\n        for i, x in enumerate(nums):\n"
    "            if target - x in seen:\n                return (seen[target - x], i)\n"
    "            seen[x] = i\n"
)
CASES = {
    "stdin_readline": (
        STDIN_ROW,
        "import sys\na, b = map(int, sys.stdin.readline().split())\nprint(a + b)",
        "passed",
    ),
    "stdin_main_guard": (
        STDIN_ROW,
        "def main():\n    a, b = map(int, input().split())\n"
        "    print(a + b)\n\nif __name__ == '__main__':\n    main()",
        "passed",
    ),
    "stdin_buffer": (
        STDIN_ROW,
        "import sys\ndata = sys.stdin.buffer.read().split()\n"
        "sys.stdout.write(str(int(data[0]) + int(data[1])) + '\\n')\n"
        "sys.exit(0)",
        "passed",
    ),
    "stdin_open0": (
        STDIN_ROW,
        "import os\na, b = map(int, open(0).read().split())\nos.write(1, f'{a + b}\\n'.encode())",
        "passed",
    ),
    "stdin_wrong": (STDIN_ROW, "a, b = map(int, input().split())\nprint(a * b)", "wrong_answer"),
    "stdin_crash": (STDIN_ROW, "raise RuntimeError('x')", "runtime_error"),
    "stdin_loop": (STDIN_ROW, "while True:\n    pass", "timeout"),
    "func_ok": (FUNC_ROW, TWO_SUM, "passed"),
    "func_wrong": (
        FUNC_ROW,
        TWO_SUM.replace("(seen[target - x], i)", "[i, seen[target - x]]"),
        "wrong_answer",
    ),
    "func_missing": (FUNC_ROW, "class Solution:\n    def other(self):\n        pass", "load_error"),
    "func_network": (
        FUNC_ROW,
        "import socket\nclass Solution:\n    def twoSum(self, n, t):\n"
        "        socket.create_connection(('127.0.0.1', 80))",
        "runtime_error",
    ),
}


@pytest.fixture(scope="module")
def verdicts():
    with ThreadPoolExecutor(max_workers=5) as pool:
        futures = {
            name: pool.submit(
                grade_livecodebench, f"```python\n{code}\n```", row, test_timeout_s=1.0
            )
            for name, (row, code, _) in CASES.items()
        }
        return {name: f.result() for name, f in futures.items()}


@pytest.mark.parametrize("name", list(CASES))
def test_grade(verdicts, name):
    v = verdicts[name]
    expected = CASES[name][2]
    assert v.status == expected, v
    assert v.passed is (expected == "passed")
    assert v.n_tests == len(load_test_cases(CASES[name][0]))


def test_test_cases_loading():
    stdin_cases = load_test_cases(STDIN_ROW)
    assert [c["output"] for c in stdin_cases] == ["7\n", "30", "1000000001\n"]
    assert {c["testtype"] for c in load_test_cases(FUNC_ROW)} == {"functional"}


def test_compressed_cases_refuse_pickled_objects():
    evil = base64.b64encode(zlib.compress(pickle.dumps(OSError("x")))).decode()
    with pytest.raises(ValueError, match="refusing to load global|not JSON"):
        load_test_cases({"question_id": "q", "public_test_cases": "[]", "private_test_cases": evil})


@pytest.mark.parametrize(
    "row, message",
    [
        ({"question_id": "q"}, "no test cases"),
        ({"public_test_cases": '[{"input": "1"}]'}, "'input' and 'output'"),
        ({"public_test_cases": [{"input": "1", "output": "1", "testtype": "batch"}]}, "testtype"),
        (
            {
                "public_test_cases": [
                    {"input": "1", "output": "1", "testtype": "stdin"},
                    {"input": "1", "output": "1", "testtype": "functional"},
                ]
            },
            "mixes",
        ),
        ({"public_test_cases": "{not json"}, "not JSON|invalid JSON"),
    ],
)
def test_malformed_rows(row, message):
    with pytest.raises(ValueError, match=message):
        load_test_cases(row)


def test_functional_needs_func_name():
    row = dict(FUNC_ROW, metadata="{}")
    with pytest.raises(ValueError, match="func_name"):
        grade_livecodebench(f"```python\n{TWO_SUM}\n```", row)


@pytest.mark.parametrize(
    ("pred", "gold", "ok"),
    [
        ("7\n", "7", True),
        ("  1 2  \n3\n\n", "1 2\n3", True),
        ("1.50\n", "1.5", True),  # Decimal comparison
        ("1.5000001", "1.5", False),
        ("1 2", "1  2", True),
        ("a b", "a  c", False),
        ("1\n2", "1", False),
    ],
)
def test_stdout_matches(pred, gold, ok):
    assert stdout_matches(pred, gold) is ok


def test_no_code():
    v = grade_livecodebench("I cannot solve this.", STDIN_ROW)
    assert not v.passed and v.status == "no_code" and v.n_tests == 3
