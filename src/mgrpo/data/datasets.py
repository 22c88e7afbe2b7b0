"""Prompt datasets: load JSONL / JSON / Parquet / CSV files, vendored sets or hub ids.

`load_prompt_dataset(source, ...)` turns a source into a list of `PromptRecord`s
(id, question, optional answer). The answer is never used as a reward by the
label-free presets; the trainer only uses it for diagnostics (label / policy accuracy).

Sources, tried in this order:
1. an existing file path: `.jsonl` (one JSON object per line), `.json` (a list of
   objects, or an object holding exactly one such list), `.parquet` (needs `pyarrow`),
   `.csv` (header row);
2. a named set (`VENDORED`: math500, aime24, aime25, amc23, gsm8k_test shipped in the
   package; gsm8k_train and mbppplus fetched on first use, `mgrpo.data.fetched`; `gsm8k`
   means gsm8k_<split>), with its own column names used whenever the caller leaves
   `prompt_field` at its default;
3. a Hugging Face hub id (`owner/name` or `owner/name:config`) through the optional
   `datasets` package, imported lazily.

A prompt cell is either a string or a list of chat messages, each `{"role": ..., "content":
...}` with role system / user / assistant and string content, at least one user turn (the
format of TRL and of chat datasets on the hub). A messages prompt keeps its turns in
`record.meta["messages"]`; `record.question` is then the last user turn's content.

Bad input is never a silent wrong run: a row without the prompt field, a non-string or
empty prompt, invalid JSON, non-UTF-8 bytes, an over-long prompt or a duplicate id raises
`DatasetError` naming the file and the line (JSONL/CSV), item (JSON) or row (Parquet).
Duplicate ids may instead be skipped (`on_duplicate="skip"`): the first occurrence is kept
and the number skipped is logged as a warning.
"""

from __future__ import annotations

import csv
import io
import json
import logging
import os
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mgrpo.data.fetched import FETCHED, fetched_path

logger = logging.getLogger(__name__)

DEFAULT_PROMPT_FIELD = "problem"
# A single prompt above this many characters is almost surely a broken row (a whole
# file pasted into one cell); pass max_prompt_chars=None to accept it anyway.
DEFAULT_MAX_PROMPT_CHARS = 1_000_000
VENDORED_DIR = Path(__file__).resolve().parent / "vendored"
FILE_SUFFIXES = (".jsonl", ".json", ".parquet", ".csv")
DUPLICATE_POLICIES = ("error", "skip")
PARAPHRASE = "paraphrase"  # `PromptRecord.meta` key of a question's rephrased twin


class DatasetError(ValueError):
    """A dataset could not be loaded; the message names the file and line/row."""


@dataclass(frozen=True)
class PromptRecord:
    """One prompt. `answer` is the reference (None when the dataset has none).

    `meta` carries extra per-row data that some benchmarks need (code tests, the
    multiple-choice permutation); it is excluded from equality and hashing.
    """

    id: str
    question: str
    answer: str | None = None
    meta: Mapping[str, Any] = field(default_factory=dict, compare=False, hash=False, repr=False)


@dataclass(frozen=True)
class VendoredSet:
    """A named JSONL set and its column names: shipped in `mgrpo/data/vendored/`, or fetched
    on first use (`mgrpo.data.fetched.FETCHED`)."""

    filename: str
    prompt_field: str
    answer_field: str | None
    id_field: str | None
    answer_transform: str | None = None  # "gsm8k": keep the text after the last '####'


VENDORED: dict[str, VendoredSet] = {
    "math500": VendoredSet("math500.jsonl", "problem", "answer", "unique_id"),
    "aime24": VendoredSet("aime24.jsonl", "problem", "answer", None),
    "aime25": VendoredSet("aime25.jsonl", "problem", "answer", None),
    "amc23": VendoredSet("amc23.jsonl", "problem", "answer", None),
    "gsm8k_train": VendoredSet("gsm8k_train.jsonl", "question", "answer", None, "gsm8k"),
    "gsm8k_test": VendoredSet("gsm8k_test.jsonl", "question", "answer", None, "gsm8k"),
    "mbppplus": VendoredSet("mbppplus.jsonl", "prompt", None, "task_id"),
}


def gsm8k_final_answer(solution: str) -> str:
    """The final answer of a GSM8K solution: the text after the last '####', commas removed."""
    if "####" not in solution:
        return solution.strip()
    return solution.rsplit("####", 1)[1].strip().replace(",", "")


_ANSWER_TRANSFORMS = {"gsm8k": gsm8k_final_answer}


# ---------------------------------------------------------------------------- raw rows


def _decode_utf8(raw: bytes, where: str) -> str:
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise DatasetError(
            f"{where}: not valid UTF-8 (byte 0x{raw[exc.start]:02x} at offset {exc.start}); "
            "re-encode the file as UTF-8"
        ) from None


def _iter_jsonl(path: Path) -> Iterator[tuple[str, Any]]:
    with path.open("rb") as fh:
        for lineno, raw in enumerate(fh, start=1):
            where = f"{path}:{lineno}"
            text = _decode_utf8(raw, where)
            if not text.strip():
                continue
            try:
                yield where, json.loads(text)
            except json.JSONDecodeError as exc:
                raise DatasetError(
                    f"{where}: invalid JSON ({exc.msg} at column {exc.colno})"
                ) from None


def _iter_json(path: Path) -> Iterator[tuple[str, Any]]:
    text = _decode_whole(path)
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise DatasetError(
            f"{path}:{exc.lineno}: invalid JSON ({exc.msg} at column {exc.colno})"
        ) from None
    if isinstance(data, dict):
        lists = [key for key, value in data.items() if isinstance(value, list)]
        if len(lists) != 1:
            raise DatasetError(
                f"{path}: expected a JSON list of objects, or an object holding exactly one list; "
                f"found an object with list keys {lists}"
            )
        data = data[lists[0]]
    if not isinstance(data, list):
        raise DatasetError(f"{path}: expected a JSON list of objects, got {type(data).__name__}")
    for index, row in enumerate(data):
        yield f"{path}: item {index}", row


def _decode_whole(path: Path) -> str:
    raw = path.read_bytes()
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = raw.count(b"\n", 0, exc.start) + 1
        raise DatasetError(
            f"{path}:{line}: not valid UTF-8 (byte 0x{raw[exc.start]:02x}); "
            "re-encode the file as UTF-8"
        ) from None


def _iter_csv(path: Path) -> Iterator[tuple[str, Any]]:
    reader = csv.DictReader(io.StringIO(_decode_whole(path), newline=""))
    if reader.fieldnames is None:
        return
    rows = iter(reader)
    while True:
        try:
            row = next(rows)
        except StopIteration:
            return
        except csv.Error as exc:  # e.g. a cell over csv.field_size_limit() (a 10 MB row)
            raise DatasetError(f"{path}:{reader.line_num + 1}: malformed CSV ({exc})") from None
        # reader.line_num is the physical line where this record ended
        if None in row:
            raise DatasetError(f"{path}:{reader.line_num}: more cells than header columns")
        yield f"{path}:{reader.line_num}", row


def _iter_parquet(path: Path) -> Iterator[tuple[str, Any]]:
    try:
        # lazy, optional dependency: pip install mgrpo[data]
        import pyarrow.parquet as pq
    except ImportError:
        raise DatasetError(
            f"{path}: reading Parquet needs pyarrow: pip install pyarrow (or 'mgrpo[data]')"
        ) from None
    try:
        table = pq.read_table(path)
    except Exception as exc:  # pyarrow raises several unrelated types for a bad file
        raise DatasetError(f"{path}: cannot read Parquet file: {exc}") from exc
    for index, row in enumerate(table.to_pylist()):
        yield f"{path}: row {index}", row


_READERS = {
    ".jsonl": _iter_jsonl,
    ".json": _iter_json,
    ".parquet": _iter_parquet,
    ".csv": _iter_csv,
}


def read_rows(path: str | os.PathLike[str]) -> Iterator[tuple[str, dict[str, Any]]]:
    """Yield `(location, row)` pairs from a JSONL/JSON/Parquet/CSV file.

    `location` is "file:line" (JSONL, CSV), "file: item i" (JSON) or "file: row i"
    (Parquet). Every row must be a JSON object / mapping, else `DatasetError`.
    """
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix not in _READERS:
        raise DatasetError(
            f"{path}: unsupported file type {suffix!r}; use one of {', '.join(FILE_SUFFIXES)}"
        )
    if not path.is_file():
        raise DatasetError(f"{path}: file not found")
    for where, row in _READERS[suffix](path):
        if not isinstance(row, dict):
            raise DatasetError(f"{where}: expected a JSON object, got {type(row).__name__}")
        yield where, row


def _iter_hub(source: str, split: str) -> Iterator[tuple[str, dict[str, Any]]]:
    name, _, config = source.partition(":")
    try:
        # lazy, optional dependency: pip install mgrpo[data]
        import datasets
    except ImportError:
        raise DatasetError(
            f"{source!r} is not a file, not a vendored set ({', '.join(vendored_names())}), "
            "and the optional `datasets` package is not installed to fetch it from the "
            "Hugging Face hub: pip install datasets (or 'mgrpo[data]'), or download the data "
            "to a local .jsonl/.parquet/.csv file and pass its path"
        ) from None
    try:
        dataset = datasets.load_dataset(name, config or None, split=split)
    except Exception as exc:  # network, auth, missing split: all end the load the same way
        raise DatasetError(
            f"could not load {source!r} (split {split!r}) from the Hugging Face hub: "
            f"{type(exc).__name__}: {exc}. Offline? Download it to a local "
            ".jsonl/.parquet/.csv file and pass the path instead"
        ) from exc
    for index, row in enumerate(dataset):
        yield f"{source}[{split}]: row {index}", dict(row)


# ---------------------------------------------------------------------------- records


def vendored_names() -> list[str]:
    return sorted([*VENDORED, "gsm8k"])


def vendored_path(name: str) -> Path:
    """Path of a named set's JSONL file (e.g. "math500"): the copy in the package, or the
    fetched one (`mgrpo.data.fetched`; DatasetError naming the file to place when it is
    missing and cannot be fetched)."""
    if name not in VENDORED:
        raise ValueError(f"unknown vendored set {name!r}; valid: {', '.join(sorted(VENDORED))}")
    if name in FETCHED:
        try:
            return fetched_path(name)
        except FileNotFoundError as exc:
            raise DatasetError(str(exc)) from exc
    return VENDORED_DIR / VENDORED[name].filename


def field_text(row: Mapping[str, Any], key: str, where: str, *, role: str) -> str:
    """`row[key]` as a non-empty string, else DatasetError naming `where`.

    role: "prompt" (must be a str; chat-message prompts go through `chat_messages`),
    "answer" / "id" (str, int or float accepted and converted with str(); bool, None, lists
    and dicts rejected).
    """
    if key not in row:
        raise DatasetError(
            f"{where}: missing {role} field {key!r} (row has {sorted(map(str, row))}); "
            f"set the {role} column name with {role}_field="
        )
    value = row[key]
    if role == "prompt" and not isinstance(value, str):
        raise DatasetError(
            f"{where}: prompt field {key!r} must be a string or a list of chat messages "
            f"({{role, content}}), got {type(value).__name__}"
        )
    if isinstance(value, bool) or not isinstance(value, (str, int, float)):
        raise DatasetError(
            f"{where}: {role} field {key!r} must be a string, got {type(value).__name__}"
        )
    text = value if isinstance(value, str) else str(value)
    if not text.strip():
        raise DatasetError(f"{where}: {role} field {key!r} is an empty string")
    return text


CHAT_ROLES = ("system", "user", "assistant")


def chat_messages(value: Any, key: str, where: str) -> list[dict[str, str]]:
    """A prompt cell holding chat messages, validated: a non-empty list of `{role, content}`
    mappings, roles in CHAT_ROLES, non-empty string contents, >= 1 user turn. DatasetError
    naming `where` and the message index otherwise."""
    if not value:
        raise DatasetError(f"{where}: prompt field {key!r} is an empty list of messages")
    out = []
    for i, message in enumerate(value):
        at = f"{where}: prompt field {key!r}, message {i}"
        if not isinstance(message, Mapping) or "role" not in message or "content" not in message:
            raise DatasetError(f"{at}: expected an object with 'role' and 'content', got {message!r}")
        role, content = message["role"], message["content"]
        if role not in CHAT_ROLES:
            raise DatasetError(f"{at}: role {role!r} is not one of {list(CHAT_ROLES)}")
        if not isinstance(content, str) or not content.strip():
            raise DatasetError(f"{at}: content must be a non-empty string, got {content!r}")
        out.append({"role": role, "content": content})
    if not any(m["role"] == "user" for m in out):
        raise DatasetError(f"{where}: prompt field {key!r} has no user message")
    return out


def _prompt(row: Mapping[str, Any], key: str, where: str) -> tuple[str, list[dict[str, str]] | None]:
    """(question text, chat messages or None) of a row's prompt cell."""
    value = row.get(key)
    if isinstance(value, (list, tuple)):
        messages = chat_messages(value, key, where)
        return [m["content"] for m in messages if m["role"] == "user"][-1], messages
    return field_text(row, key, where, role="prompt"), None


def records_from_rows(
    rows: Iterator[tuple[str, Mapping[str, Any]]],
    *,
    source_name: str,
    prompt_field: str,
    answer_field: str | None,
    id_field: str | None,
    answer_transform: str | None = None,
    limit: int | None = None,
    on_duplicate: str = "error",
    max_prompt_chars: int | None = DEFAULT_MAX_PROMPT_CHARS,
    keep_row: bool = False,
    paraphrase_field: str | None = None,
) -> list[PromptRecord]:
    """Validate `(location, row)` pairs into records (see `load_prompt_dataset`)."""
    if on_duplicate not in DUPLICATE_POLICIES:
        raise ValueError(f"on_duplicate={on_duplicate!r}; valid: {', '.join(DUPLICATE_POLICIES)}")
    if limit is not None and limit < 1:
        raise ValueError(f"limit must be >= 1 or None, got {limit}")
    transform = _ANSWER_TRANSFORMS[answer_transform] if answer_transform else None
    records: list[PromptRecord] = []
    seen: dict[str, str] = {}
    skipped = 0
    for index, (where, row) in enumerate(rows):
        if limit is not None and len(records) >= limit:
            break
        question, messages = _prompt(row, prompt_field, where)
        size = sum(len(m["content"]) for m in messages) if messages else len(question)
        if max_prompt_chars is not None and size > max_prompt_chars:
            raise DatasetError(
                f"{where}: prompt is {size:,} characters, above "
                f"max_prompt_chars={max_prompt_chars:,} (pass max_prompt_chars=None to accept it)"
            )
        answer = None
        if answer_field is not None:
            answer = field_text(row, answer_field, where, role="answer")
            if transform is not None:
                answer = transform(answer)
        if id_field is not None:
            rid = field_text(row, id_field, where, role="id")
        else:
            rid = f"{source_name}-{index}"
        if rid in seen:
            if on_duplicate == "error":
                raise DatasetError(
                    f"{where}: duplicate id {rid!r} (first seen at {seen[rid]}); "
                    "fix the data or pass on_duplicate='skip' to keep the first"
                )
            skipped += 1
            continue
        seen[rid] = where
        meta: dict[str, Any] = {"row": dict(row)} if keep_row else {}
        if messages is not None:
            meta["messages"] = messages
        if paraphrase_field is not None:
            meta[PARAPHRASE] = field_text(row, paraphrase_field, where, role="paraphrase")
        records.append(PromptRecord(id=rid, question=question, answer=answer, meta=meta))
    if skipped:
        logger.warning(
            "%s: skipped %d rows with duplicate ids (kept the first)", source_name, skipped
        )
    if not records:
        raise DatasetError(f"{source_name}: the dataset has no rows")
    return records


def _looks_like_path(source: str) -> bool:
    return source.lower().endswith(FILE_SUFFIXES) or (os.sep in source and Path(source).exists())


def load_prompt_dataset(
    source: str | os.PathLike[str],
    *,
    prompt_field: str = DEFAULT_PROMPT_FIELD,
    answer_field: str | None = None,
    id_field: str | None = None,
    split: str = "train",
    limit: int | None = None,
    on_duplicate: str = "error",
    max_prompt_chars: int | None = DEFAULT_MAX_PROMPT_CHARS,
    keep_row: bool = False,
    paraphrase_field: str | None = None,
) -> list[PromptRecord]:
    """Load prompts from a file, a vendored set or a hub id (see the module docstring).

    prompt_field / answer_field / id_field: column names. For a vendored set the set's own
    columns are used when prompt_field is left at its default (and its answers are always
    attached, GSM8K reduced to the number after '####'). Without id_field, ids are
    "<name>-<row index>". `limit`: keep the first N rows. `on_duplicate`: "error" (default)
    or "skip" (keep the first occurrence, log the count). `keep_row=True` keeps the raw row
    in `record.meta["row"]`. `paraphrase_field`: the column holding each question's rephrased
    twin (preset co-rewarding-i), kept as the string `record.meta[PARAPHRASE]`; every row needs
    one.

    Raises DatasetError for a missing file, an empty dataset or any bad row, naming the
    file and line.
    """
    text = os.fspath(source)
    path = Path(text).expanduser()
    common = dict(
        limit=limit,
        on_duplicate=on_duplicate,
        max_prompt_chars=max_prompt_chars,
        keep_row=keep_row,
        paraphrase_field=paraphrase_field,
    )
    if path.is_file() or _looks_like_path(text):
        return records_from_rows(
            read_rows(path),
            source_name=path.stem,
            prompt_field=prompt_field,
            answer_field=answer_field,
            id_field=id_field,
            **common,
        )
    name = f"gsm8k_{split}" if text == "gsm8k" else text
    if name in VENDORED:
        spec = VENDORED[name]
        custom = prompt_field != DEFAULT_PROMPT_FIELD
        answer_key = answer_field if custom or answer_field else spec.answer_field
        return records_from_rows(
            read_rows(vendored_path(name)),
            source_name=name,
            prompt_field=prompt_field if custom else spec.prompt_field,
            answer_field=answer_key,
            id_field=id_field if custom or id_field else spec.id_field,
            answer_transform=spec.answer_transform if answer_key == spec.answer_field else None,
            **common,
        )
    if text.count("/") == 1 and not text.startswith(("/", ".")):
        return records_from_rows(
            _iter_hub(text, split),
            source_name=text.replace("/", "_"),
            prompt_field=prompt_field,
            answer_field=answer_field,
            id_field=id_field,
            **common,
        )
    raise DatasetError(
        f"{text!r}: not an existing file, a vendored set ({', '.join(vendored_names())}) "
        "or a hub id of the form owner/name"
    )
