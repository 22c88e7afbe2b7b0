"""Atomic, verifiable training checkpoints (no pickle anywhere): the `checkpoints/step-N/`
directory format. What each file holds is the run directory's description
(`mgrpo.train.run.run_dir.LAYOUT`, where every file name is a constant).

A checkpoint is written into a hidden temp directory beside its final place, every file is
fsynced, the manifest is written last, and the directory is renamed into place (atomic on
POSIX). Each file is read once, right after it is written, for its hash; a process reuses the
hashes of the checkpoints it wrote or verified while their files are unchanged (size, mtime,
inode), so rotation and the end-of-run summary read nothing again. At resume (a new process)
the newest directory whose manifest verifies in full is used; a truncated or
altered one is reported and skipped. Several ranks verify it together, each hashing its
share of the files (`hash_share`), so a resume reads the checkpoint once, not once per rank. Rotation (`keep_last`) only deletes older checkpoints
after a newer one verified.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
import time
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any, Protocol

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from mgrpo.train.run import faults
from mgrpo.train.run.run_dir import (
    HF_WEIGHTS_FILE,
    MANIFEST_FILE,
    MOMENTUM_FILE,
    OPTIMIZER_FILE,
    OPTIMIZER_META_FILE,
    STATE_FILE,
    STEP_DIR,
    TOKENIZER_FILE,
    step_dir_name,
)


class HFSaveable(Protocol):
    """What writes itself as Hugging Face files into a directory: a model, its LoRA export,
    a tokenizer."""

    def save_pretrained(self, save_directory: str | Path, **kwargs: object) -> object: ...


class CheckpointError(RuntimeError):
    """A checkpoint is missing, incomplete or fails verification."""


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _hash_and_fsync(path: Path) -> str:
    """sha256 of a file just written, read once, and the file fsynced in the same pass."""
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
        os.fsync(fh.fileno())
    return digest.hexdigest()


def _fsync_dirs(root: Path) -> None:
    for path in sorted(root.rglob("*")):
        if path.is_dir():
            _fsync_dir(path)
    _fsync_dir(root)


def _fsync_dir(root: Path) -> None:
    fd = os.open(root, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


# Checkpoints this process hashed (written, or verified in full): their manifest text and
# what `os.stat` said of each file then. While the manifest reads the same and every file has
# that size, mtime and inode, a later verification reuses the hashes instead of reading the
# checkpoint again. A file modified in place gets an mtime no earlier than the manifest's
# (the manifest is written after the files were hashed, and `save_checkpoint` makes its mtime
# strictly later than theirs), so it no longer matches; a file whose mtime is not earlier
# than the manifest's (a coarse file-system clock) is never trusted and is hashed again.
_VERIFIED: dict[Path, tuple[str, dict[str, tuple[int, int, int]]]] = {}


def _stats(path: Path, names: list[str]) -> dict[str, tuple[int, int, int]]:
    out = {}
    for name in [MANIFEST_FILE, *names]:
        st = (path / name).stat()
        out[name] = (st.st_size, st.st_mtime_ns, st.st_ino)
    return out


def _remember(path: Path, manifest_text: str, names: list[str]) -> None:
    _VERIFIED[path.resolve()] = (manifest_text, _stats(path, names))


def _still_verified(path: Path, manifest_text: str, names: list[str]) -> bool:
    entry = _VERIFIED.get(path.resolve())
    if entry is None or entry[0] != manifest_text:
        return False
    stats = entry[1]
    if stats != _stats(path, names):
        return False
    written = stats[MANIFEST_FILE][1]
    return all(stats[name][1] < written for name in names)


def _write_manifest(directory: Path, step: int, files: dict[str, dict]) -> str:
    """Write the manifest (fsynced) with an mtime strictly later than every file it lists."""
    text = json.dumps({"step": step, "files": files}, indent=1, sort_keys=True)
    newest = max(((directory / n).stat().st_mtime_ns for n in files), default=0)
    for _ in range(100):  # a coarse clock: wait for its next tick (a few ms at most)
        with open(directory / MANIFEST_FILE, "w", encoding="utf-8") as fh:
            fh.write(text)
            fh.flush()
            os.fsync(fh.fileno())
        if (directory / MANIFEST_FILE).stat().st_mtime_ns > newest:
            break
        time.sleep(0.002)
    return text


def write_json(path: Path, data: object) -> None:
    path.write_text(json.dumps(data, indent=1, sort_keys=True), encoding="utf-8")


# ----------------------------------------------------------------- optimizer without pickle


def optimizer_to_files(optimizer: torch.optim.Optimizer) -> tuple[dict[str, torch.Tensor], dict]:
    """Split an optimizer state_dict into flat tensors (safetensors) and JSON metadata."""
    state = optimizer.state_dict()
    tensors: dict[str, torch.Tensor] = {}
    scalars: dict[str, dict[str, Any]] = {}
    for idx, entry in state["state"].items():
        for key, value in entry.items():
            if isinstance(value, torch.Tensor):
                tensors[f"state.{idx}.{key}"] = value.detach().cpu().contiguous()
            else:
                scalars.setdefault(str(idx), {})[key] = value
    groups = [{k: (list(v) if isinstance(v, tuple) else v) for k, v in g.items()} for g in state["param_groups"]]
    return tensors, {"param_groups": groups, "scalars": scalars}


def optimizer_from_files(tensors: dict[str, torch.Tensor], meta: dict) -> dict:
    state: dict[int, dict[str, Any]] = {}
    for name, value in tensors.items():
        _, idx, key = name.split(".", 2)
        state.setdefault(int(idx), {})[key] = value
    for idx, entry in meta.get("scalars", {}).items():
        state.setdefault(int(idx), {}).update(entry)
    groups = [{k: (tuple(v) if k == "betas" else v) for k, v in g.items()} for g in meta["param_groups"]]
    return {"state": state, "param_groups": groups}


# ------------------------------------------------------------------------------- writing


def save_checkpoint(
    root: Path,
    step: int,
    *,
    model: HFSaveable,
    tokenizer: HFSaveable,
    optimizer: torch.optim.Optimizer | None,
    trainer_state: dict[str, Any],
    momentum: dict[str, torch.Tensor] | None = None,
    keep_last: int = 2,
    extra_tensors: dict[str, dict[str, torch.Tensor]] | None = None,
    tmp_dir: Path | None = None,
) -> Path:
    """Write checkpoint `step` atomically under `root`; rotate old ones; return its path.

    `optimizer` None: its state lives elsewhere (FSDP: the sharded files). `tmp_dir`: a
    directory from `new_tmp_dir` that already holds files (FSDP: every rank's shards under
    `sharded/`); they are covered by the manifest and renamed into place with the rest."""
    root.mkdir(parents=True, exist_ok=True)
    final = root / step_dir_name(step)
    tmp = tmp_dir if tmp_dir is not None else new_tmp_dir(root, step)
    try:
        model.save_pretrained(tmp, safe_serialization=True)
        faults.hit("checkpoint_write", tmp / HF_WEIGHTS_FILE)
        tokenizer.save_pretrained(tmp)
        faults.hit("checkpoint_write", tmp / TOKENIZER_FILE)
        if momentum is not None:
            save_file(momentum, str(tmp / MOMENTUM_FILE))
            faults.hit("checkpoint_write", tmp / MOMENTUM_FILE)
        if optimizer is not None:
            opt_tensors, opt_meta = optimizer_to_files(optimizer)
            save_file(opt_tensors, str(tmp / OPTIMIZER_FILE))
            write_json(tmp / OPTIMIZER_META_FILE, opt_meta)
        faults.hit("checkpoint_write", tmp / OPTIMIZER_FILE)
        write_json(tmp / STATE_FILE, trainer_state)
        for filename, tensors in (extra_tensors or {}).items():
            save_file(tensors, str(tmp / filename))
        faults.hit("checkpoint_write", tmp / STATE_FILE)
        # every file is read once: hashed for the manifest and fsynced in the same pass
        files = {
            str(p.relative_to(tmp)): {"size": p.stat().st_size, "sha256": _hash_and_fsync(p)}
            for p in sorted(tmp.rglob("*"))
            if p.is_file()
        }
        manifest_text = _write_manifest(tmp, step, files)
        _fsync_dirs(tmp)
        faults.hit("checkpoint_write", tmp / MANIFEST_FILE)
        if final.exists():
            shutil.rmtree(final)
        os.replace(tmp, final)
        _fsync_dir(root)  # make the rename itself durable
        _remember(final, manifest_text, list(files))  # later rotations reuse these hashes
    except SafetensorError as exc:  # a full disk inside safetensors' Rust writer lands here
        shutil.rmtree(tmp, ignore_errors=True)
        raise CheckpointError(f"writing checkpoint {final} failed: {exc}") from exc
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    _rotate(root, keep_last, fresh=final)  # hashed above: not read again
    return final


def new_tmp_dir(root: Path, step: int) -> Path:
    """A fresh hidden temp directory beside the final `step-N` (same filesystem: atomic rename)."""
    root.mkdir(parents=True, exist_ok=True)
    return Path(tempfile.mkdtemp(prefix=f".tmp-step-{step}-", dir=root))


def _rotate(root: Path, keep_last: int, fresh: Path | None = None) -> None:
    """Keep the newest `keep_last` checkpoints that verify and anything newer than the
    oldest of them; delete everything older (broken ones included, so they cannot pile up).
    Fewer than `keep_last` good ones: nothing is deleted. Verification stops as soon as
    `keep_last` good ones are found; `fresh` (the checkpoint just written and hashed) counts
    as good without being read again, and so do checkpoints this process hashed that are
    unchanged since (`verify_checkpoint`)."""
    found = list_checkpoints(root)
    good = 0
    for i, (_, path) in enumerate(found):
        if path == fresh or verify_checkpoint(path) is None:
            good += 1
            if good == keep_last:
                for _, stale in found[i + 1 :]:
                    shutil.rmtree(stale, ignore_errors=True)
                break
    for leftover in root.glob(".tmp-step-*"):
        shutil.rmtree(leftover, ignore_errors=True)


# ------------------------------------------------------------------------------- reading


def list_checkpoints(root: Path) -> list[tuple[int, Path]]:
    """(step, path) of every `step-N` directory, newest first."""
    if not root.is_dir():
        return []
    found = []
    for path in root.iterdir():
        match = STEP_DIR.match(path.name)
        if match and path.is_dir():
            found.append((int(match.group(1)), path))
    return sorted(found, reverse=True)


def hash_share(files: dict[str, dict], rank: int, world: int) -> list[str]:
    """The manifest's files rank `rank` of `world` hashes in a shared verification: largest
    first, each to the rank with the fewest bytes so far (ties: the lowest rank). A function
    of the manifest alone, so the ranks agree without talking, and every file falls to one
    rank: the checkpoint is read once in total, at most its size / W + its largest file per
    rank."""
    load = [0] * world
    mine = []
    for name in sorted(files, key=lambda n: (-files[n]["size"], n)):
        owner = min(range(world), key=lambda r: (load[r], r))
        load[owner] += files[name]["size"]
        if owner == rank:
            mine.append(name)
    return mine


def _manifest(path: Path) -> tuple[str, dict[str, dict]] | str:
    """(manifest text, its files) of checkpoint `path`, or why it cannot be read."""
    manifest = path / MANIFEST_FILE
    if not manifest.is_file():
        return f"{path}: no {MANIFEST_FILE} (incomplete write)"
    try:
        text = manifest.read_text(encoding="utf-8")
        return text, json.loads(text)["files"]
    except (ValueError, KeyError) as exc:
        return f"{manifest}: unreadable manifest ({exc})"


def verify_checkpoint(path: Path, *, share: tuple[int, int] = (0, 1)) -> str | None:
    """None when every file in the manifest has its recorded size and sha256, else why not.
    Sizes are always checked; the hashes are read again unless this process hashed the
    checkpoint and its files are unchanged since. `share` (rank, world): hash only this
    rank's files (`hash_share`), the others being hashed by the other ranks."""
    read = _manifest(path)
    if isinstance(read, str):
        return read
    manifest_text, files = read
    for name, meta in files.items():
        file = path / name
        if not file.is_file():
            return f"{file}: missing"
        if file.stat().st_size != meta["size"]:
            return f"{file}: size {file.stat().st_size} != {meta['size']} (truncated?)"
    if _still_verified(path, manifest_text, list(files)):
        return None  # hashed by this process and unchanged since
    rank, world = share
    for name in hash_share(files, rank, world) if world > 1 else list(files):
        if _sha256(path / name) != files[name]["sha256"]:
            return f"{path / name}: checksum mismatch (altered or corrupted)"
    if world == 1:
        _remember(path, manifest_text, list(files))
    return None


def latest_checkpoint(root: Path, *, share: tuple[int, int] = (0, 1),
                      agree: Callable[[Any], list[Any]] | None = None) -> Path | None:
    """Newest checkpoint that verifies; broken newer ones are reported with a warning.

    Several ranks (resume): each calls with its `share` (rank, world) and `agree`, which
    returns every rank's value of its argument in rank order (an all-gather). Every rank
    walks rank 0's list of checkpoints, hashes its share of each candidate's files, and a
    candidate is good when no rank found a problem, so each file is hashed once over all
    ranks (not W times) and every rank returns the same checkpoint."""
    found = list_checkpoints(root)
    if agree is not None:
        found = agree(found)[0]
    for _, path in found:
        problem = verify_checkpoint(path, share=share)
        if agree is not None:
            problem = next((p for p in agree(problem) if p is not None), None)
            read = _manifest(path)
            if problem is None and not isinstance(read, str):  # verified by the ranks together
                _remember(path, read[0], list(read[1]))
        if problem is None:
            return path
        warnings.warn(f"skipping checkpoint: {problem}", stacklevel=2)
    return None


def load_tensors(path: Path) -> dict[str, torch.Tensor]:
    return load_file(str(path))


def read_json(path: Path) -> dict[str, Any]:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise CheckpointError(f"{path}: cannot read ({exc})") from None
