"""Benchmark registry: vendored sets, user-supplied sets, multiple-choice shuffling."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from mgrpo.data.benchmarks import (
    BENCHMARKS,
    BenchmarkDataMissing,
    custom_benchmark,
    get_benchmark,
    load_benchmark,
    question_seed,
)
from mgrpo.data.datasets import DatasetError
from mgrpo.data.fetched import is_present

PAPER_SET = {
    "math500",
    "aime24",
    "aime25",
    "amc23",
    "gsm8k",
    "mbpp_plus",
    "gpqa_diamond",
    "gpqa",
    "mmlu_pro",
    "livecodebench",
    "math_train",
}


def needs(name: str) -> pytest.MarkDecorator:
    """Skip unless the fetched set `name` is on this machine (tests never fetch it)."""
    return pytest.mark.skipif(not is_present(name), reason=f"{name} is not in $MGRPO_DATA_DIR")


def test_registry_has_every_benchmark_and_paper_samples() -> None:
    assert set(BENCHMARKS) == PAPER_SET
    assert {n for n, b in BENCHMARKS.items() if b.paper_samples == 8} == {
        "aime24",
        "aime25",
        "gpqa_diamond",
    }
    with pytest.raises(ValueError, match="unknown benchmark 'math5000'; valid: math500"):
        get_benchmark("math5000")


@pytest.mark.parametrize(
    ("name", "count"),
    [
        ("math500", 500),
        ("aime24", 30),
        ("aime25", 30),
        ("amc23", 40),
        ("gsm8k", 1319),
        pytest.param("mbpp_plus", 378, marks=needs("mbppplus")),
    ],
)
def test_vendored_benchmarks_load(name: str, count: int) -> None:
    records = load_benchmark(name)
    assert len(records) == count and len({r.id for r in records}) == count
    if name == "mbpp_plus":
        assert records[0].meta["grader"] == "mbpp_plus" and records[0].meta["row"]["entry_point"]
        assert "```" in records[0].question
    else:
        assert all(r.answer for r in records)
    assert len(load_benchmark(name, limit=3)) == 3


def test_mmlu_pro_lists_its_own_columns() -> None:
    columns = BENCHMARKS["mmlu_pro"].columns
    assert columns.startswith("MMLU-Pro's own columns") and "GPQA" not in columns


def test_gsm8k_reference_is_the_final_number() -> None:
    assert [r.answer for r in load_benchmark("gsm8k", limit=3)] == ["18", "3", "70000"]


@pytest.mark.parametrize(
    "name", ["gpqa_diamond", "gpqa", "mmlu_pro", "livecodebench", "math_train"]
)
def test_missing_user_data_gives_one_clear_message(
    name: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("MGRPO_DATA_DIR", str(tmp_path))
    monkeypatch.delenv(f"MGRPO_{name.upper()}_FILE", raising=False)
    monkeypatch.setitem(__import__("sys").modules, "datasets", None)  # as if not installed
    with pytest.raises(BenchmarkDataMissing) as info:
        load_benchmark(name)
    message = str(info.value)
    assert str(tmp_path / f"{name}.jsonl") in message
    assert f"MGRPO_{name.upper()}_FILE" in message and "--benchmark-file" in message
    assert "Required columns:" in message


GPQA_ROWS = [
    {
        "Record ID": f"r{i}",
        "Question": f"Which is right {i}?",
        "Correct Answer": "right",
        "Incorrect Answer 1": "w1",
        "Incorrect Answer 2": "w2",
        "Incorrect Answer 3": "w3",
    }
    for i in range(20)
]


def write_jsonl(path: Path, rows: list[dict]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return path


def test_gpqa_from_data_dir_shuffles_deterministically(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("MGRPO_DATA_DIR", str(tmp_path))
    write_jsonl(tmp_path / "gpqa_diamond.jsonl", GPQA_ROWS)
    first = load_benchmark("gpqa_diamond")
    again = load_benchmark("gpqa_diamond")
    other_seed = load_benchmark("gpqa_diamond", seed=1)
    assert [r.id for r in first] == [f"r{i}" for i in range(20)]
    for a, b in zip(first, again, strict=True):
        assert a.question == b.question and a.answer == b.answer and a.meta == b.meta
    letters = {r.answer for r in first}
    assert len(letters) > 1  # the correct option is not always A
    assert [r.meta["permutation"] for r in first] != [r.meta["permutation"] for r in other_seed]
    for r in first:
        perm, options = r.meta["permutation"], r.meta["options"]
        assert sorted(perm) == [0, 1, 2, 3] and r.meta["choice_seed"] == question_seed(0, r.id)
        assert options["ABCD".index(r.answer)] == "right"  # the letter points at the correct text
        assert f"({r.answer}) right" in r.question


def test_env_var_file_and_generic_choice_columns(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    rows = [
        {"question_id": 1, "question": "Q1", "options": ["a", "b", "c"], "answer": "B"},
        {
            "question_id": 2,
            "question": "Q2",
            "options": ["a", "b", "c", "d", "e"],
            "answer_index": 4,
        },
        {"question_id": 3, "question": "Q3", "options": ["x", "y"], "answer": "y"},
    ]
    path = write_jsonl(tmp_path / "mmlu.jsonl", rows)
    monkeypatch.setenv("MGRPO_MMLU_PRO_FILE", str(path))
    records = load_benchmark("mmlu_pro")
    correct_text = ["b", "e", "y"]
    for record, text in zip(records, correct_text, strict=True):
        assert record.meta["options"]["ABCDE".index(record.answer)] == text


def test_choice_shuffle_off_keeps_order(tmp_path: Path) -> None:
    path = write_jsonl(
        tmp_path / "c.jsonl",
        [{"id": "q", "question": "Q", "options": ["a", "b", "c", "d"], "answer": 2}],
    )
    bench = custom_benchmark(path, "choice")
    (record,) = load_benchmark(bench, shuffle_choices=False)
    assert record.answer == "C" and record.question == "Q\n\n(A) a\n(B) b\n(C) c\n(D) d"


@pytest.mark.parametrize(
    ("row", "needle"),
    [
        ({"question": "Q", "options": ["a"], "answer": "A"}, "1 options; need 2..10"),
        ({"question": "Q", "options": "not json", "answer": "A"}, "'options' must be a list"),
        ({"question": "Q", "options": ["a", "b"], "answer": "Z"}, "'answer' must be a letter"),
        ({"question": "Q", "options": ["a", "b"], "answer": 5}, "answer index 5 out of range"),
        (
            {"Question": "Q", "Correct Answer": "a", "Incorrect Answer 1": "b"},
            "missing answer field 'Incorrect Answer 2'",
        ),
    ],
)
def test_bad_choice_rows(tmp_path: Path, row: dict, needle: str) -> None:
    path = write_jsonl(tmp_path / "bad.jsonl", [row])
    with pytest.raises(DatasetError) as info:
        load_benchmark(custom_benchmark(path, "choice"))
    assert "bad.jsonl:1" in str(info.value) and needle in str(info.value)


def test_custom_math_file_and_duplicate_ids(tmp_path: Path) -> None:
    path = write_jsonl(
        tmp_path / "mine.jsonl",
        [
            {"id": "x", "question": "1+1", "answer": 2},
            {"id": "y", "question": "2+2", "answer": "4"},
        ],
    )
    records = load_benchmark(custom_benchmark(path, "math"))
    assert [(r.id, r.question, r.answer) for r in records] == [("x", "1+1", "2"), ("y", "2+2", "4")]
    write_jsonl(
        path,
        [{"id": "x", "problem": "a", "answer": "1"}, {"id": "x", "problem": "b", "answer": "2"}],
    )
    with pytest.raises(DatasetError, match="mine.jsonl:2: duplicate problem id 'x'"):
        load_benchmark(custom_benchmark(path, "math"))
    with pytest.raises(ValueError, match="--kind 'essay'"):
        custom_benchmark(path, "essay")


def test_math_train_from_solution_column(tmp_path: Path) -> None:
    path = write_jsonl(
        tmp_path / "math_train.jsonl", [{"problem": "p", "solution": "so $\\boxed{\\frac{1}{2}}$."}]
    )
    (record,) = load_benchmark("math_train", file=path)
    assert record.answer == "\\frac{1}{2}"


def test_livecodebench_prompt_from_user_file(tmp_path: Path) -> None:
    rows = [
        {
            "question_id": "abc1",
            "question_content": "Print the sum.",
            "starter_code": "",
            "public_test_cases": "[]",
        },
        {
            "question_id": "lc2",
            "question_content": "Add.",
            "starter_code": "class Solution:\n    def add(self, a, b):",
        },
    ]
    records = load_benchmark("livecodebench", file=write_jsonl(tmp_path / "lcb.jsonl", rows))
    assert "stdin" in records[0].question and "starter code" in records[1].question
    assert all(r.meta["grader"] == "livecodebench" and r.answer is None for r in records)
