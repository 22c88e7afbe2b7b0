"""On-disk cache of lab models: location, manifest with sha256 per file, atomic install.

Layout: `<root>/<config hash>/` is a normal Hugging Face model directory (model +
tokenizer, safetensors) plus `manifest.json`:

    {"format": 1, "config_hash": "...", "config": {...}, "files": {"model.safetensors": "<sha256>", ...},
     "metrics": {...}, "build_seconds": ..., "versions": {...}}

An entry is valid only if the manifest parses, names the expected hash, lists the
required files, and every listed file exists with the recorded sha256. Anything else
(a half-written directory, a flipped byte, a deleted file) is "corrupt" and rebuilt.
Entries are built in a temporary sibling directory and renamed into place, so a reader
never sees a partial entry.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import uuid
from pathlib import Path
from typing import Any

from mgrpo.files import mgrpo_cache_root

MANIFEST_NAME = "manifest.json"
MANIFEST_FORMAT = 1
REQUIRED_FILES = ("config.json", "model.safetensors", "tokenizer.json")
HASH_CHUNK_BYTES = 1 << 20
TMP_PREFIX = ".tmp-"
TRASH_PREFIX = ".trash-"


class CorruptCacheError(RuntimeError):
    """A cache entry exists but fails verification (message says which file and why)."""


def lab_cache_root(cache_dir: str | os.PathLike | None = None) -> Path:
    """Directory holding lab entries `<hash>/`: `cache_dir` if given, else `<mgrpo root>/lab`."""
    return Path(cache_dir).expanduser() if cache_dir is not None else mgrpo_cache_root() / "lab"


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(HASH_CHUNK_BYTES), b""):
            digest.update(chunk)
    return digest.hexdigest()


def hash_files(directory: Path) -> dict[str, str]:
    """sha256 of every regular file under `directory` (relative posix paths), manifest excluded."""
    files = sorted(p for p in directory.rglob("*") if p.is_file() and p.name != MANIFEST_NAME)
    return {p.relative_to(directory).as_posix(): sha256_file(p) for p in files}


def write_manifest(directory: Path, config_hash: str, payload: dict[str, Any]) -> dict[str, Any]:
    """Hash the files of `directory` and write its manifest; returns the manifest."""
    manifest = {"format": MANIFEST_FORMAT, "config_hash": config_hash, **payload,
                "files": hash_files(directory)}
    (directory / MANIFEST_NAME).write_text(json.dumps(manifest, indent=2, sort_keys=True) + "\n")
    return manifest


def read_manifest(directory: Path) -> dict[str, Any]:
    """Parse `directory/manifest.json`; raises CorruptCacheError if missing or not JSON."""
    path = directory / MANIFEST_NAME
    try:
        manifest = json.loads(path.read_text())
    except FileNotFoundError as err:
        raise CorruptCacheError(f"{path}: missing") from err
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        raise CorruptCacheError(f"{path}: unreadable ({err})") from err
    if not isinstance(manifest, dict):
        raise CorruptCacheError(f"{path}: not a JSON object")
    return manifest


def verify_entry(directory: Path, config_hash: str) -> dict[str, Any]:
    """Return the manifest of a valid entry; raise CorruptCacheError naming what is wrong."""
    manifest = read_manifest(directory)
    if manifest.get("format") != MANIFEST_FORMAT:
        raise CorruptCacheError(f"{directory}: manifest format {manifest.get('format')!r} != "
                                f"{MANIFEST_FORMAT}")
    if manifest.get("config_hash") != config_hash:
        raise CorruptCacheError(f"{directory}: manifest config_hash "
                                f"{manifest.get('config_hash')!r} != {config_hash!r}")
    files = manifest.get("files")
    if not isinstance(files, dict):
        raise CorruptCacheError(f"{directory}: manifest has no 'files' table")
    for name in REQUIRED_FILES:
        if name not in files:
            raise CorruptCacheError(f"{directory}: manifest lacks required file {name}")
    for name, expected in files.items():
        path = directory / name
        if not path.is_file():
            raise CorruptCacheError(f"{path}: missing")
        actual = sha256_file(path)
        if actual != expected:
            raise CorruptCacheError(f"{path}: sha256 {actual[:12]}... != manifest {str(expected)[:12]}...")
    return manifest


def new_temp_dir(root: Path, config_hash: str) -> Path:
    """A fresh empty directory next to the final entry (same filesystem, so rename is atomic)."""
    root.mkdir(parents=True, exist_ok=True)
    path = root / f"{TMP_PREFIX}{config_hash}-{os.getpid()}-{uuid.uuid4().hex[:8]}"
    path.mkdir()
    return path


def remove_entry(path: Path) -> None:
    """Move `path` aside (atomic) then delete it; missing is fine."""
    if not path.exists():
        return
    trash = path.with_name(f"{TRASH_PREFIX}{path.name}-{uuid.uuid4().hex[:8]}")
    os.replace(path, trash)
    shutil.rmtree(trash, ignore_errors=True)


def install_entry(temp_dir: Path, final_dir: Path, config_hash: str) -> Path:
    """Rename the finished `temp_dir` to `final_dir`.

    A corrupt `final_dir` is removed first. If another process installed a valid entry
    meanwhile, that one wins and `temp_dir` is discarded.
    """
    if final_dir.exists():
        try:
            verify_entry(final_dir, config_hash)
        except CorruptCacheError:
            remove_entry(final_dir)
        else:
            shutil.rmtree(temp_dir, ignore_errors=True)
            return final_dir
    try:
        os.rename(temp_dir, final_dir)
    except OSError:
        # lost a race: someone renamed a directory into place between our check and rename
        verify_entry(final_dir, config_hash)
        shutil.rmtree(temp_dir, ignore_errors=True)
    return final_dir
