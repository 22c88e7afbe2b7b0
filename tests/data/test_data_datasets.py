"""load_prompt_dataset: formats, vendored sets, column mapping, bad-input table, duplicates."""

from __future__ import annotations

import hashlib
import json
import logging
from pathlib import Path

import pytest

from mgrpo.data.datasets import (
    VENDORED,
    VENDORED_DIR,
    DatasetError,
    PromptRecord,
    load_prompt_dataset,
)
from mgrpo.data.fetched import FETCHED, is_present

ROWS = [
    {"id": "a", "problem": "1+1?", "answer": "2"},
    {"id": "b", "problem": "2+3?", "answer": 5},
    {"id": "c", "problem": "7-4?", "answer": "3"},
]


def needs(name: str) -> pytest.MarkDecorator:
    """Skip unless the fetched set `name` is on this machine (tests never fetch it)."""
    return pytest.mark.skipif(not is_present(name), reason=f"{name} is not in $MGRPO_DATA_DIR")


def write_jsonl(path: Path, rows: list) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return path


def test_vendored_files_are_byte_identical() -> None:
    sums = (VENDORED_DIR / "SHA256SUMS").read_text().split("\n")
    checked = 0
    for line in filter(None, sums):
        digest, name = line.split()
        assert hashlib.sha256((VENDORED_DIR / name).read_bytes()).hexdigest() == digest, name
        checked += 1
    assert checked == len(VENDORED) - len(FETCHED) == 5


@pytest.mark.parametrize(
    ("name", "count", "first_id", "first_answer"),
    [
        ("math500", 500, "test/precalculus/807.json", "\\left( 3, \\frac{\\pi}{2} \\right)"),
        ("aime24", 30, "aime24-0", "204"),
        ("aime25", 30, "aime25-0", "70"),
        ("amc23", 40, "amc23-0", "27"),
        ("gsm8k_test", 1319, "gsm8k_test-0", "18"),
        pytest.param("gsm8k_train", 7473, "gsm8k_train-0", "72", marks=needs("gsm8k_train")),
    ],
)
def test_vendored_sets(name: str, count: int, first_id: str, first_answer: str) -> None:
    records = load_prompt_dataset(name)
    assert len(records) == count
    assert records[0].id == first_id and records[0].answer == first_answer
    assert len({r.id for r in records}) == count


@needs("gsm8k_train")
def test_gsm8k_alias_follows_split() -> None:
    assert len(load_prompt_dataset("gsm8k", split="test")) == 1319
    assert load_prompt_dataset("gsm8k", split="train", limit=3)[2].answer.isdigit()


def test_jsonl_basic_limit_and_id_mapping(tmp_path: Path) -> None:
    path = write_jsonl(tmp_path / "p.jsonl", ROWS)
    records = load_prompt_dataset(path, answer_field="answer", id_field="id")
    assert records == [
        PromptRecord("a", "1+1?", "2"),
        PromptRecord("b", "2+3?", "5"),
        PromptRecord("c", "7-4?", "3"),
    ]
    assert [r.id for r in load_prompt_dataset(path, limit=2)] == ["p-0", "p-1"]
    assert load_prompt_dataset(str(path))[0].answer is None  # answers only when asked for


def test_column_mapping(tmp_path: Path) -> None:
    path = write_jsonl(tmp_path / "q.jsonl", [{"question": "Q?", "gold": "7", "uid": 12}])
    (record,) = load_prompt_dataset(
        path, prompt_field="question", answer_field="gold", id_field="uid"
    )
    assert record == PromptRecord("12", "Q?", "7")


def test_json_csv_parquet_agree(tmp_path: Path) -> None:
    (tmp_path / "p.json").write_text(json.dumps({"data": ROWS}), encoding="utf-8")
    (tmp_path / "p.csv").write_text(
        'id,problem,answer\na,1+1?,2\nb,2+3?,5\nc,"7-4?",3\n', encoding="utf-8"
    )
    expected = load_prompt_dataset(
        write_jsonl(tmp_path / "p.jsonl", ROWS), answer_field="answer", id_field="id"
    )
    for name in ("p.json", "p.csv"):
        assert (
            load_prompt_dataset(tmp_path / name, answer_field="answer", id_field="id") == expected
        )
    pa = pytest.importorskip("pyarrow")
    import pyarrow.parquet as pq

    table = pa.table(
        {"id": ["a", "b", "c"], "problem": ["1+1?", "2+3?", "7-4?"], "answer": ["2", "5", "3"]}
    )
    pq.write_table(table, tmp_path / "p.parquet")
    assert (
        load_prompt_dataset(tmp_path / "p.parquet", answer_field="answer", id_field="id")
        == expected
    )


def test_blank_lines_are_skipped(tmp_path: Path) -> None:
    path = tmp_path / "b.jsonl"
    path.write_text('{"problem": "x"}\n\n   \n{"problem": "y"}\n', encoding="utf-8")
    assert [r.question for r in load_prompt_dataset(path)] == ["x", "y"]


# (file name, raw bytes, kwargs, substrings the error must contain)
BAD_INPUT = [
    (
        "missing.jsonl",
        b'{"problem": "a"}\n{"question": "b"}\n',
        {},
        ["missing.jsonl:2", "missing prompt field 'problem'", "question"],
    ),
    (
        "type.jsonl",
        b'{"problem": "a"}\n{"problem": 3}\n',
        {},
        ["type.jsonl:2", "must be a string", "int"],
    ),
    ("list.jsonl", b'{"problem": ["a"]}\n', {}, ["list.jsonl:1", "message 0", "'role' and 'content'"]),
    (
        "empty_str.jsonl",
        b'{"problem": "a"}\n{"problem": "a"}\n{"problem": "  "}\n',
        {},
        ["empty_str.jsonl:3", "empty string"],
    ),
    (
        "badjson.jsonl",
        b'{"problem": "a"}\n{"problem": "b",\n',
        {},
        ["badjson.jsonl:2", "invalid JSON"],
    ),
    ("notobj.jsonl", b'["a", "b"]\n', {}, ["notobj.jsonl:1", "expected a JSON object"]),
    (
        "latin1.jsonl",
        b'{"problem": "ok"}\n{"problem": "caf\xe9"}\n',
        {},
        ["latin1.jsonl:2", "UTF-8", "0xe9"],
    ),
    ("latin1.csv", b"problem\nok\ncaf\xe9\n", {}, ["latin1.csv:3", "UTF-8"]),
    (
        "badjson.json",
        b'[{"problem": "a"},\n {"problem": }]',
        {},
        ["badjson.json:2", "invalid JSON"],
    ),
    ("scalar.json", b'"just a string"', {}, ["scalar.json", "expected a JSON list"]),
    (
        "noans.jsonl",
        b'{"problem": "a", "answer": "1"}\n{"problem": "b"}\n',
        {"answer_field": "answer"},
        ["noans.jsonl:2", "missing answer field 'answer'"],
    ),
    (
        "boolans.jsonl",
        b'{"problem": "a", "answer": true}\n',
        {"answer_field": "answer"},
        ["boolans.jsonl:1", "answer field", "bool"],
    ),
    (
        "dup.jsonl",
        b'{"id": 1, "problem": "a"}\n{"id": 2, "problem": "b"}\n{"id": 1, "problem": "c"}\n',
        {"id_field": "id"},
        ["dup.jsonl:3", "duplicate id '1'", "dup.jsonl:1"],
    ),
    ("empty.jsonl", b"\n\n", {}, ["empty", "no rows"]),
    ("cells.csv", b"problem\na,b\n", {}, ["cells.csv:2", "more cells"]),
    (
        "huge.jsonl",
        b'{"problem": "' + b"x" * 2_000 + b'"}\n',
        {"max_prompt_chars": 1_000},
        ["huge.jsonl:1", "2,000 characters", "max_prompt_chars"],
    ),
]


@pytest.mark.parametrize(
    ("name", "raw", "kwargs", "needles"), BAD_INPUT, ids=[b[0] for b in BAD_INPUT]
)
def test_bad_input_names_file_and_line(
    tmp_path: Path, name: str, raw: bytes, kwargs: dict, needles: list[str]
) -> None:
    path = tmp_path / name
    path.write_bytes(raw)
    with pytest.raises(DatasetError) as info:
        load_prompt_dataset(path, **kwargs)
    for needle in needles:
        assert needle in str(info.value), (needle, str(info.value))


def test_ten_megabyte_row_is_refused_by_default_and_accepted_on_request(tmp_path: Path) -> None:
    path = tmp_path / "big.jsonl"
    path.write_text(
        '{"problem": "small"}\n' + json.dumps({"problem": "y" * 10_000_000}) + "\n",
        encoding="utf-8",
    )
    with pytest.raises(DatasetError, match=r"big.jsonl:2: prompt is 10,000,000 characters"):
        load_prompt_dataset(path)
    records = load_prompt_dataset(path, max_prompt_chars=None)
    assert len(records[1].question) == 10_000_000


def test_duplicates_skip_policy_counts(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    path = write_jsonl(tmp_path / "d.jsonl", [{"id": i % 2, "problem": f"q{i}"} for i in range(5)])
    with caplog.at_level(logging.WARNING, logger="mgrpo.data.datasets"):
        records = load_prompt_dataset(path, id_field="id", on_duplicate="skip")
    assert [(r.id, r.question) for r in records] == [("0", "q0"), ("1", "q1")]
    assert "skipped 3 rows with duplicate ids" in caplog.text
    with pytest.raises(ValueError, match="on_duplicate"):
        load_prompt_dataset(path, on_duplicate="ignore")


def test_missing_file_and_unknown_source(tmp_path: Path) -> None:
    with pytest.raises(DatasetError, match="nope.jsonl: file not found"):
        load_prompt_dataset(tmp_path / "nope.jsonl")
    with pytest.raises(DatasetError, match="unsupported file type '.txt'"):
        (tmp_path / "x.txt").write_text("hi")
        load_prompt_dataset(tmp_path / "x.txt")
    with pytest.raises(DatasetError, match="not an existing file, a vendored set"):
        load_prompt_dataset("not-a-set")
    with pytest.raises(ValueError, match="limit must be >= 1"):
        load_prompt_dataset("aime24", limit=0)


def test_hub_id_without_datasets_package_is_a_clear_error() -> None:
    try:
        import datasets  # noqa: F401
    except ImportError:
        with pytest.raises(DatasetError, match="`datasets` package is not installed"):
            load_prompt_dataset("someone/some-dataset")
    else:  # pragma: no cover - depends on the environment
        pytest.skip("datasets is installed; the offline path is exercised elsewhere")


def test_parquet_without_pyarrow_message(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import builtins

    real_import = builtins.__import__

    def fake_import(name: str, *args, **kwargs):
        if name.startswith("pyarrow"):
            raise ImportError(name)
        return real_import(name, *args, **kwargs)

    (tmp_path / "x.parquet").write_bytes(b"PAR1")
    monkeypatch.setattr(builtins, "__import__", fake_import)
    with pytest.raises(DatasetError, match="x.parquet: reading Parquet needs pyarrow"):
        load_prompt_dataset(tmp_path / "x.parquet")


def test_hub_id_through_datasets_package(monkeypatch: pytest.MonkeyPatch) -> None:
    import types

    calls: list[tuple] = []

    def load_dataset(name, config, split):
        calls.append((name, config, split))
        if name == "offline/set":
            raise ConnectionError("no network")
        return [{"prompt": "hello", "sol": 4}, {"prompt": "bye", "sol": 5}]

    monkeypatch.setitem(
        __import__("sys").modules, "datasets", types.SimpleNamespace(load_dataset=load_dataset)
    )
    records = load_prompt_dataset(
        "org/set:cfg", prompt_field="prompt", answer_field="sol", split="test"
    )
    assert calls == [("org/set", "cfg", "test")]
    assert [(r.id, r.question, r.answer) for r in records] == [
        ("org_set:cfg-0", "hello", "4"),
        ("org_set:cfg-1", "bye", "5"),
    ]
    with pytest.raises(
        DatasetError, match="could not load 'offline/set'.*ConnectionError: no network.*local"
    ):
        load_prompt_dataset("offline/set")


def test_paraphrase_field_keeps_each_rows_twin(tmp_path: Path) -> None:
    path = tmp_path / "pairs.jsonl"
    path.write_text('{"q": "2+3?", "q2": "3+2?", "a": "5"}\n{"q": "7-4?", "q2": "seven minus four?", "a": 3}\n')
    records = load_prompt_dataset(path, prompt_field="q", answer_field="a",
                                  paraphrase_field="q2")
    assert [r.meta["paraphrase"] for r in records] == ["3+2?", "seven minus four?"]
    assert all("paraphrase" not in r.meta for r in load_prompt_dataset(path, prompt_field="q"))
    path.write_text('{"q": "2+3?", "q2": "3+2?"}\n{"q": "7-4?"}\n')
    with pytest.raises(DatasetError, match=r"pairs.jsonl:2: missing paraphrase field 'q2'"):
        load_prompt_dataset(path, prompt_field="q", paraphrase_field="q2")
