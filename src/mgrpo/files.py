"""Where mgrpo keeps files, and whole-file writes a kill cannot leave half done (stdlib only).

`mgrpo_cache_root()` is the one cache root: `$MGRPO_CACHE_DIR`, else `$XDG_CACHE_HOME/mgrpo`,
else `~/.cache/mgrpo` (lab worlds in `lab/`, fetched data sets in `data/`, the converted
SmolLM2 in `smollm2-135m-instruct/`).

`write_text_atomic(path, text)` writes `<name>.tmp` beside `path` and renames it over `path`
(`os.replace`, atomic on POSIX within one filesystem): a reader sees the old file or the new
one, never a prefix. Used for run configs, metrics.jsonl rewrites, tracker state and eval
results; checkpoints have their own directory-level protocol (`train/run/checkpoint.py`).
"""

from __future__ import annotations

import os
from pathlib import Path

__all__ = ["CACHE_ENV", "mgrpo_cache_root", "write_text_atomic"]

CACHE_ENV = "MGRPO_CACHE_DIR"  # overrides the mgrpo cache root


def mgrpo_cache_root() -> Path:
    """`$MGRPO_CACHE_DIR`, else `$XDG_CACHE_HOME/mgrpo`, else `~/.cache/mgrpo`."""
    env = os.environ.get(CACHE_ENV)
    if env:
        return Path(env).expanduser()
    xdg = os.environ.get("XDG_CACHE_HOME")
    base = Path(xdg).expanduser() if xdg else Path.home() / ".cache"
    return base / "mgrpo"


def write_text_atomic(path: Path, text: str) -> None:
    """Replace `path` with `text` (UTF-8) in one rename."""
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)
