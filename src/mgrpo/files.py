"""Whole-file writes that a kill cannot leave half done (standard library only).

`write_text_atomic(path, text)` writes `<name>.tmp` beside `path` and renames it over `path`
(`os.replace`, atomic on POSIX within one filesystem): a reader sees the old file or the new
one, never a prefix. Used for run configs, metrics.jsonl rewrites, tracker state and eval
results; checkpoints have their own directory-level protocol (`train/checkpoint.py`).
"""

from __future__ import annotations

import os
from pathlib import Path

__all__ = ["write_text_atomic"]


def write_text_atomic(path: Path, text: str) -> None:
    """Replace `path` with `text` (UTF-8) in one rename."""
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)
