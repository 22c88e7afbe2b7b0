"""MBPP+ grading: extraction, EvalPlus comparison rules, codec, and the self-check.

Self-check: every canonical solution, fed back as a response in a ```python block,
must pass its own task. The default suite runs a fixed sample of 25 tasks (every 15th
row); ``-m slow`` runs all 378. Known exceptions: none (378/378 pass).
"""

from __future__ import annotations

import math
from collections import Counter, OrderedDict, deque
from concurrent.futures import ThreadPoolExecutor

import pytest

from mgrpo.data.fetched import is_present

if not is_present("mbppplus"):  # not in the wheel; tests never fetch it
    pytest.skip("mbppplus.jsonl is not on this machine ($MGRPO_DATA_DIR)", allow_module_level=True)

from mgrpo.eval.sandbox import (  # noqa: E402 - after the skip
    CodeVerdict,
    check_output,
    extract_code,
    grade_mbpp_plus,
    load_mbpp_plus,
)
from mgrpo.eval.sandbox._harness import Opaque, decode, encode, mbpp_deserialize_inputs

ROWS = load_mbpp_plus()
BY_ID = {r["task_id"]: r for r in ROWS}
SAMPLE = [r["task_id"] for r in ROWS[::15]][:25]


def _fenced(code: str) -> str:
    return f"Sure, here it is:\n```python\n{code}\n```\nThis runs in O(n)."


def test_vendored_rows():
    assert len(ROWS) == 378
    assert len(set(BY_ID)) == 378


@pytest.mark.parametrize(
    ("response", "code"),
    [
        ("```python\nx = 1\n```", "x = 1\n"),
        ("```py\na\n```\ntext\n```python\nb\n```", "b\n"),
        ("```python\nfirst\n```\n```\nplain\n```", "first\n"),  # python block wins
        ("```\nplain\n```", "plain\n"),
        ("```Python3\nz\n```", "z\n"),
        ("```python\nunterminated = True\n", "unterminated = True\n"),
        ("```python\n\n```\n```python\nreal\n```", "real\n"),
        ("no code at all", None),
        ("```text\nnot python\n```", None),
    ],
)
def test_extract_code(response, code):
    assert extract_code(response) == code


def test_extract_code_rejects_non_str():
    with pytest.raises(ValueError, match="response"):
        extract_code(None)


@pytest.mark.parametrize(
    ("inp", "out", "exp", "atol", "entry", "ok"),
    [
        ([1], 3, 3, 0, "f", True),
        ([1], 3, 4, 0, "f", False),
        ([1], 0.1 + 0.2, 0.3, 0, "f", True),  # float-shaped: atol 1e-6 enforced
        ([1], 0.3001, 0.3, 0, "f", False),
        ([1], 0.30009, 0.3, 1e-4, "f", True),  # row atol
        ([1], [0.1 + 0.2, 1.0], [0.3, 1.0], 0, "f", True),
        ([1], (0.1 + 0.2,), [0.3], 0, "f", False),  # type must match under tolerance
        ([1], [0.3], [0.3, 0.3], 1e-4, "f", False),  # length must match
        ([1], (5, 4), (4, 5), 0, "similar_elements", True),  # set equality task
        ([1], "match", True, 0, "check_str", True),  # "returned something" task
        ([1], None, True, 0, "check_str", False),
        ([1], False, True, 0, "check_str", False),
        ([1, 2], 0, 8, 0, "sum_div", True),  # Mbpp/295 oracle: 0 or the expected value
        ([1, 2], 7, 8, 0, "sum_div", False),
        ([1, 2], 12, 0, 0, "are_equivalent", True),  # Mbpp/164 oracle
        ([123, 256], 7, 99, 0, "digit_distance_nums", True),  # Mbpp/558 oracle
        ([3, 4], 35, 1, 0, "surface_Area", True),  # Mbpp/581 oracle: round(9 + 25.6)
        ([1], Opaque("x.Any", "<Any>"), 3, 0, "f", False),  # rigged object never equals
        ([1], {1, 2}, {2, 1}, 0, "f", True),
        ([1], "abc", [1.0], 0, "f", False),
    ],
)
def test_check_output(inp, out, exp, atol, entry, ok):
    assert check_output(inp, out, exp, atol, entry) is ok


@pytest.mark.parametrize(
    "value",
    [
        None,
        True,
        0,
        -(10**40),
        1.5,
        math.inf,
        -math.inf,
        "s\u00e9",
        b"\x00\xff",
        (1, (2, [3])),
        {1, 2},
        frozenset({"a"}),
        {(1, 2): [3], "k": None},
        2 + 3j,
        Counter("abca"),
        OrderedDict([(2, 1), (1, 2)]),
        deque([1, 2]),
        range(1, 9, 2),
        [],
    ],
)
def test_codec_round_trip(value):
    back = decode(encode(value))
    assert back == value and type(back) is type(value)


def test_codec_nan_and_opaque():
    assert math.isnan(decode(encode(math.nan)))

    class Weird:
        def __repr__(self) -> str:
            return "Weird()"

    assert decode(encode(Weird())) == Opaque(f"{__name__}.{Weird.__qualname__}", "Weird()")
    with pytest.raises(ValueError):
        decode({"$": "pickle", "v": "..."})


def test_deserialize_inputs_matches_evalplus_table():
    assert mbpp_deserialize_inputs("Mbpp/2", [[[1, 2], [3]]]) == [[(1, 2), (3,)]]
    assert mbpp_deserialize_inputs("Mbpp/252", [["1+2j"]]) == [[1 + 2j]]
    assert mbpp_deserialize_inputs("Mbpp/580", [[[1, [2, 3]], 4]]) == [((1, (2, 3)), 4)]
    assert mbpp_deserialize_inputs("Mbpp/3", [[7]]) == [[7]]


def _self_check(task_ids: list[str], workers: int = 3) -> dict[str, CodeVerdict]:
    def one(tid: str) -> CodeVerdict:
        return grade_mbpp_plus(_fenced(BY_ID[tid]["canonical_solution"]), BY_ID[tid])

    with ThreadPoolExecutor(max_workers=workers) as pool:
        return dict(zip(task_ids, pool.map(one, task_ids), strict=True))


def test_canonical_solutions_pass_sample():
    verdicts = _self_check(SAMPLE)
    failed = {tid: v for tid, v in verdicts.items() if not v.passed}
    assert not failed
    assert all(v.status == "passed" and v.n_passed == v.n_tests > 0 for v in verdicts.values())


@pytest.mark.slow
@pytest.mark.timeout(3600)
def test_canonical_solutions_pass_all():
    verdicts = _self_check([r["task_id"] for r in ROWS], workers=4)
    failed = {tid: v for tid, v in verdicts.items() if not v.passed}
    assert not failed, failed


def test_correct_alternative_passes_and_wrong_fails():
    problem = BY_ID["Mbpp/3"]  # is_not_prime
    correct = (
        "def is_not_prime(n):\n    if n < 2:\n        return True\n"
        "    return any(n % d == 0 for d in range(2, int(n ** 0.5) + 1))"
    )
    wrong = "def is_not_prime(n):\n    return n % 2 == 0"
    good = grade_mbpp_plus(_fenced(correct), problem)
    bad = grade_mbpp_plus(_fenced(wrong), problem)
    assert good.passed and good.status == "passed", good
    assert not bad.passed and bad.status == "wrong_answer" and 0 < bad.n_passed < bad.n_tests
    assert "expected" in bad.detail


def test_main_guard_demo_code_does_not_run():
    code = (
        "def is_not_prime(n):\n    return n < 2 or any(n % d == 0 for d in range(2, n))\n"
        "if __name__ == '__main__':\n    print(is_not_prime(int(input())))"
    )
    verdict = grade_mbpp_plus(_fenced(code), BY_ID["Mbpp/3"])
    assert verdict.passed, verdict


def test_float_tolerance_task():
    problem = next(r for r in ROWS if r["atol"] > 0)
    verdict = grade_mbpp_plus(_fenced(problem["canonical_solution"]), problem)
    assert verdict.passed, verdict


def test_program_output_and_exceptions_do_not_count():
    problem = BY_ID["Mbpp/3"]
    printing = "def is_not_prime(n):\n    print(True)\n    raise SystemExit(0)"
    verdict = grade_mbpp_plus(_fenced(printing), problem)
    assert not verdict.passed and verdict.status == "runtime_error"


def test_malformed_problem():
    with pytest.raises(ValueError, match="lacks fields"):
        grade_mbpp_plus("```python\npass\n```", {"task_id": "x"})
    with pytest.raises(ValueError, match="MBPP"):
        grade_mbpp_plus("```python\npass\n```", ["not", "a", "row"])
