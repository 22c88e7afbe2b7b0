"""Junk datasets: each gives a clear DatasetError naming file and line (or row/item), or a
documented skip with a count (duplicate ids with on_duplicate="skip")."""

from __future__ import annotations

import json
import logging

import pytest

from mgrpo.data.datasets import DatasetError, load_prompt_dataset

BIG = "x" * (10 * 1024 * 1024)  # a 10 MB single row


def _jsonl(rows) -> bytes:
    return b"".join((r if isinstance(r, bytes) else json.dumps(r).encode()) + b"\n" for r in rows)


GOOD = {"question": "1+1?", "answer": "2", "id": "a"}
# name -> (file name, content, substring the error must contain besides the file name)
JSONL_CASES = {
    "question_is_int": [GOOD, {"question": 7, "answer": "1"}],
    "question_is_list": [GOOD, {"question": ["a"], "answer": "1"}],
    "question_is_null": [GOOD, {"question": None, "answer": "1"}],
    "question_is_object": [GOOD, {"question": {"a": 1}}],
    "question_is_nan": [GOOD, b'{"question": NaN}'],
    "answer_is_list": [GOOD, {"question": "q", "answer": [1]}],
    "answer_is_bool": [GOOD, {"question": "q", "answer": True}],
    "missing_column": [GOOD, {"text": "q"}],
    "empty_string": [GOOD, {"question": "", "answer": "1"}],
    "blank_string": [GOOD, {"question": "  \n\t", "answer": "1"}],
    "row_not_object": [GOOD, [1, 2]],
    "invalid_json": [GOOD, b'{"question": "unterminated'],
    "non_utf8": [GOOD, b'{"question": "caf\xe9"}'],
    "huge_row": [GOOD, {"question": BIG, "answer": "1"}],
    "duplicate_id": [GOOD, {**GOOD, "question": "again"}],
}


@pytest.mark.parametrize("case", sorted(JSONL_CASES))
def test_jsonl_junk_names_file_and_line(tmp_path, case):
    path = tmp_path / f"{case}.jsonl"
    path.write_bytes(_jsonl(JSONL_CASES[case]))
    with pytest.raises(DatasetError) as info:
        load_prompt_dataset(str(path), prompt_field="question", answer_field="answer",
                            id_field="id")
    message = str(info.value)
    assert f"{path}:2" in message, message
    assert len(message) < 500  # never echoes a 10 MB row


def test_duplicate_ids_can_be_skipped_with_a_count(tmp_path, caplog):
    path = tmp_path / "dups.jsonl"
    path.write_bytes(_jsonl([GOOD, {**GOOD, "question": "again"}, {**GOOD, "question": "3rd"},
                             {"question": "q2", "id": "b"}]))
    with caplog.at_level(logging.WARNING):
        records = load_prompt_dataset(str(path), prompt_field="question", answer_field=None,
                                      id_field="id", on_duplicate="skip")
    assert [r.id for r in records] == ["a", "b"] and records[0].question == "1+1?"
    assert "skipped 2 rows with duplicate ids" in caplog.text


CSV_CASES = {
    "missing_column": b"text,answer\nq,1\n",
    "empty_string": b"question,answer\nfine,1\n,2\n",
    "non_utf8": b"question,answer\nfine,1\ncaf\xe9,2\n",
    "extra_cells": b"question,answer\nfine,1\nq,1,oops\n",
    "huge_row": b"question,answer\nfine,1\n" + BIG.encode() + b",2\n",
}


@pytest.mark.parametrize("case", sorted(CSV_CASES))
def test_csv_junk_is_a_clear_error(tmp_path, case):
    path = tmp_path / f"{case}.csv"
    path.write_bytes(CSV_CASES[case])
    with pytest.raises(DatasetError) as info:
        load_prompt_dataset(str(path), prompt_field="question", answer_field="answer")
    message = str(info.value)
    assert str(path) in message and len(message) < 500, message
    if case != "missing_column":  # a missing column is reported at the first row
        assert f"{path}:2" in message or f"{path}:3" in message, message


JSON_CASES = {
    "not_a_list": b'{"question": "q"}',
    "two_lists": b'{"a": [], "b": []}',
    "item_not_object": b'[{"question": "q"}, 3]',
    "non_utf8": b'[{"question": "caf\xe9"}]',
    "truncated": b'[{"question": "q"}, {"quest',
    "wrong_type": b'[{"question": "q"}, {"question": 5}]',
}


@pytest.mark.parametrize("case", sorted(JSON_CASES))
def test_json_junk_is_a_clear_error(tmp_path, case):
    path = tmp_path / f"{case}.json"
    path.write_bytes(JSON_CASES[case])
    with pytest.raises(DatasetError) as info:
        load_prompt_dataset(str(path), prompt_field="question", answer_field=None)
    assert str(path) in str(info.value), info.value


def test_parquet_junk_is_a_clear_error(tmp_path):
    pa = pytest.importorskip("pyarrow")
    import pyarrow.parquet as pq

    path = tmp_path / "bad.parquet"
    pq.write_table(pa.table({"question": ["fine", None], "answer": ["1", "2"]}), path)
    with pytest.raises(DatasetError, match=r"bad\.parquet: row 1"):
        load_prompt_dataset(str(path), prompt_field="question", answer_field="answer")
    garbage = tmp_path / "garbage.parquet"
    garbage.write_bytes(b"PAR1 this is not parquet")
    with pytest.raises(DatasetError, match="garbage.parquet"):
        load_prompt_dataset(str(garbage), prompt_field="question")
