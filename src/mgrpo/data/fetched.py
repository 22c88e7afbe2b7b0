"""Data sets too large for the wheel: fetched once with `datasets`, then read from a cache.

The wheel ships the small evaluation sets (`mgrpo/data/vendored/`: MATH-500, AIME 2024/2025,
AMC 2023, the GSM8K test split). Two larger sets are fetched on first use instead:

| set | file | rows | source |
|---|---|---|---|
| `gsm8k_train` | `gsm8k_train.jsonl` | 7473 | hub `openai/gsm8k`, config `main`, split `train` (question, answer) |
| `mbppplus` | `mbppplus.jsonl` | 378 | EvalPlus's MBPP+ v0.2.0 release file (`MbppPlus-v0.2.0.jsonl.gz`) |

`fetched_path(name)` looks for the file, in order, in `$MGRPO_DATA_DIR`, then in
`<mgrpo cache>/data/` (`mgrpo.files.mgrpo_cache_root`), and otherwise fetches it there with
`datasets` (the hub loader for GSM8K; `datasets.DownloadManager` for EvalPlus's file, whose
test inputs have no single column type), written atomically. Without network or without
`datasets` the error names the file to place and where. A file that is present is used as
it is; its SHA-256 is compared with the one of the copy this project was tested with
(`SHA256`), and a difference is reported once as a warning, not an error (a re-serialised
copy of the same rows hashes differently).
"""

from __future__ import annotations

import gzip
import hashlib
import json
import os
import warnings
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

from mgrpo.files import mgrpo_cache_root, write_text_atomic

__all__ = ["DATA_DIR_ENV", "FETCHED", "FetchedSet", "fetched_path", "is_present"]

DATA_DIR_ENV = "MGRPO_DATA_DIR"
MBPP_PLUS_URL = ("https://github.com/evalplus/mbppplus_release/releases/download/v0.2.0/"
                 "MbppPlus-v0.2.0.jsonl.gz")


def _gsm8k_train_rows() -> Iterable[dict[str, object]]:
    # lazy, optional dependency: pip install 'mgrpo[data]'
    from datasets import load_dataset

    for row in load_dataset("openai/gsm8k", "main", split="train"):
        yield {"question": row["question"], "answer": row["answer"]}


def _mbpp_plus_rows() -> Iterable[dict[str, object]]:
    # lazy, optional dependency: pip install 'mgrpo[data]'
    from datasets import DownloadManager

    path = DownloadManager().download(MBPP_PLUS_URL)
    opener = gzip.open if str(path).endswith(".gz") or _is_gzip(path) else open
    with opener(path, "rt", encoding="utf-8") as handle:
        for line in handle:
            if line.strip():
                yield json.loads(line)


def _is_gzip(path: str | os.PathLike[str]) -> bool:
    with open(path, "rb") as handle:
        return handle.read(2) == b"\x1f\x8b"


@dataclass(frozen=True)
class FetchedSet:
    """A set fetched on first use: its file, size, hash and how to fetch it."""

    filename: str
    rows: int
    sha256: str  # of the copy the project was tested with
    source: str  # where it comes from, for messages
    fetch: Callable[[], Iterable[dict[str, object]]]
    columns: str  # what a placed file holds, for messages


FETCHED: dict[str, FetchedSet] = {
    "gsm8k_train": FetchedSet(
        "gsm8k_train.jsonl", 7473,
        "17f347dc51477c50d4efb83959dbb7c56297aba886e5544ee2aaed3024813465",
        "the hub (openai/gsm8k, config main, split train)", _gsm8k_train_rows,
        "question, answer (the solution ending in '#### N'), one JSON object per line"),
    "mbppplus": FetchedSet(
        "mbppplus.jsonl", 378,
        "b54e762755248ca411b523c917fa9f93c07b5ff2966bf60b3917b853926a3dad",
        f"EvalPlus's release file ({MBPP_PLUS_URL})", _mbpp_plus_rows,
        "EvalPlus's MBPP+ rows (task_id, prompt, entry_point, canonical_solution, base_input, "
        "plus_input, atol, ...), one JSON object per line"),
}

_CHECKED: set[Path] = set()  # files whose hash this process compared already


def _cache_dir() -> Path:
    return mgrpo_cache_root() / "data"


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _checked(path: Path, spec: FetchedSet) -> Path:
    if path not in _CHECKED:
        _CHECKED.add(path)
        found = _sha256(path)
        if found != spec.sha256:
            warnings.warn(f"{path}: SHA-256 {found} differs from the tested copy's "
                          f"{spec.sha256} (re-serialised or another version of the rows)",
                          stacklevel=3)
    return path


def _candidates(spec: FetchedSet) -> list[Path]:
    """Where the file is looked for: `$MGRPO_DATA_DIR`, then the cache (fetched there)."""
    data_dir = os.environ.get(DATA_DIR_ENV)
    found = [Path(data_dir).expanduser() / spec.filename] if data_dir else []
    return found + [_cache_dir() / spec.filename]


def is_present(name: str) -> bool:
    """Whether set `name` is on this machine already (nothing is fetched)."""
    return any(path.is_file() for path in _candidates(FETCHED[name]))


def fetched_path(name: str) -> Path:
    """The local file of fetched set `name` (module docstring); FileNotFoundError naming the
    file to place when it is not there and cannot be fetched."""
    spec = FETCHED[name]
    data_dir = os.environ.get(DATA_DIR_ENV)
    candidates = _candidates(spec)
    for path in candidates:
        if path.is_file():
            return _checked(path, spec)
    target = candidates[-1]
    try:
        rows = [json.dumps(row) for row in spec.fetch()]
    except Exception as exc:  # offline, no `datasets`, a moved file: one message for all
        places = " or ".join(str(p) for p in candidates)
        hint = ("; set $MGRPO_DATA_DIR to a directory holding it" if not data_dir else "")
        raise FileNotFoundError(
            f"{name}: {spec.filename} is not in the package and could not be fetched from "
            f"{spec.source} ({type(exc).__name__}: {exc}). Place the file {spec.filename} "
            f"({spec.rows} rows: {spec.columns}; SHA-256 {spec.sha256}) at {places}{hint}"
        ) from exc
    if len(rows) != spec.rows:
        raise FileNotFoundError(f"{name}: fetched {len(rows)} rows from {spec.source}, "
                                f"expected {spec.rows}; place {spec.filename} at {target}")
    target.parent.mkdir(parents=True, exist_ok=True)
    write_text_atomic(target, "".join(row + "\n" for row in rows))
    return _checked(target, spec)
