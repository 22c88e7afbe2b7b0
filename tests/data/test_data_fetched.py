"""The sets too large for the wheel (gsm8k_train, mbppplus): looked up, fetched once into the
cache, and a clear error naming the file to place when they are missing and cannot be fetched.
No test fetches anything: the fetch is replaced by a local function."""

from __future__ import annotations

import dataclasses
import hashlib
import json
from pathlib import Path

import pytest

from mgrpo.data import fetched
from mgrpo.data.datasets import VENDORED_DIR, DatasetError, load_prompt_dataset
from mgrpo.data.fetched import FETCHED, fetched_path, is_present


@pytest.fixture
def empty_dirs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> tuple[Path, Path]:
    data, cache = tmp_path / "data", tmp_path / "cache"
    data.mkdir()
    monkeypatch.setenv("MGRPO_DATA_DIR", str(data))
    monkeypatch.setenv("MGRPO_CACHE_DIR", str(cache))
    return data, cache / "data"


def test_the_large_sets_are_not_in_the_package():
    for spec in FETCHED.values():
        assert not (VENDORED_DIR / spec.filename).exists()


def test_offline_error_names_the_file_to_place(empty_dirs, monkeypatch):
    data, cache = empty_dirs

    def offline():
        raise OSError("network is unreachable")

    monkeypatch.setitem(FETCHED, "gsm8k_train", dataclasses.replace(FETCHED["gsm8k_train"],
                                                                    fetch=offline))
    with pytest.raises(DatasetError) as info:
        load_prompt_dataset("gsm8k_train")
    message = str(info.value)
    assert "gsm8k_train.jsonl is not in the package and could not be fetched" in message
    assert "network is unreachable" in message and "Place the file gsm8k_train.jsonl" in message
    assert str(data / "gsm8k_train.jsonl") in message and str(cache / "gsm8k_train.jsonl") in message
    assert FETCHED["gsm8k_train"].sha256 in message and not is_present("gsm8k_train")


def test_a_fetch_is_cached_and_read_back(empty_dirs, monkeypatch):
    _, cache = empty_dirs
    rows = [{"question": "1+1?", "answer": "2 #### 2"}, {"question": "2+2?", "answer": "#### 4"}]
    calls = []

    def fetch():
        calls.append(1)
        return iter(rows)

    text = "".join(json.dumps(r) + "\n" for r in rows)
    spec = dataclasses.replace(FETCHED["gsm8k_train"], fetch=fetch, rows=2,
                               sha256=hashlib.sha256(text.encode()).hexdigest())
    monkeypatch.setitem(FETCHED, "gsm8k_train", spec)
    monkeypatch.setattr(fetched, "_CHECKED", set())
    path = fetched_path("gsm8k_train")
    assert path == cache / "gsm8k_train.jsonl" and path.read_text() == text
    assert fetched_path("gsm8k_train") == path and len(calls) == 1  # the cache is read back
    assert [r.answer for r in load_prompt_dataset("gsm8k_train")] == ["2", "4"]


def test_a_placed_file_with_another_hash_warns(empty_dirs, monkeypatch):
    data, _ = empty_dirs
    (data / "mbppplus.jsonl").write_text('{"task_id": "Mbpp/2"}\n')
    monkeypatch.setattr(fetched, "_CHECKED", set())
    with pytest.warns(UserWarning, match="differs from the tested copy"):
        assert fetched_path("mbppplus") == data / "mbppplus.jsonl"


@pytest.mark.parametrize("name", sorted(FETCHED))
def test_the_shared_copies_are_the_tested_ones(name):
    if not is_present(name):
        pytest.skip(f"{name} is not in $MGRPO_DATA_DIR")
    path = fetched_path(name)
    assert hashlib.sha256(path.read_bytes()).hexdigest() == FETCHED[name].sha256
