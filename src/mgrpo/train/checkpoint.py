"""Atomic, verifiable training checkpoints (no pickle anywhere).

Layout of `checkpoints/step-<N>/`:
    config.json, model.safetensors, tokenizer files   the policy, an HF model directory
    momentum.safetensors                               fp32 EMA master (M-GRPO only)
    optimizer.safetensors + optimizer.json             AdamW tensors / param groups
    trainer_state.json, rng.safetensors                step, scheduler, RNG, counters
    manifest.json                                      size + sha256 of every file above

A checkpoint is written into a hidden temp directory beside its final place, every file is
fsynced, the manifest is written last, and the directory is renamed into place (atomic on
POSIX). At resume the newest directory whose manifest verifies is used; a truncated or
altered one is reported and skipped. Rotation (`keep_last`) only deletes older checkpoints
after a newer one verified.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import tempfile
import warnings
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from mgrpo.train import faults

MANIFEST = "manifest.json"
STEP_DIR = re.compile(r"^step-(\d+)$")


class CheckpointError(RuntimeError):
    """A checkpoint is missing, incomplete or fails verification."""


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _fsync_tree(root: Path) -> None:
    for path in sorted(root.rglob("*")):
        if path.is_file():
            with open(path, "rb") as fh:
                os.fsync(fh.fileno())
    _fsync_dir(root)


def _fsync_dir(root: Path) -> None:
    fd = os.open(root, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def write_json(path: Path, data: Any) -> None:
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
    model: Any,
    tokenizer: Any,
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
    final = root / f"step-{step}"
    tmp = tmp_dir if tmp_dir is not None else new_tmp_dir(root, step)
    try:
        model.save_pretrained(tmp, safe_serialization=True)
        faults.hit("checkpoint_write", tmp / "model.safetensors")
        tokenizer.save_pretrained(tmp)
        faults.hit("checkpoint_write", tmp / "tokenizer.json")
        if momentum is not None:
            save_file(momentum, str(tmp / "momentum.safetensors"))
            faults.hit("checkpoint_write", tmp / "momentum.safetensors")
        if optimizer is not None:
            opt_tensors, opt_meta = optimizer_to_files(optimizer)
            save_file(opt_tensors, str(tmp / "optimizer.safetensors"))
            write_json(tmp / "optimizer.json", opt_meta)
        faults.hit("checkpoint_write", tmp / "optimizer.safetensors")
        write_json(tmp / "trainer_state.json", trainer_state)
        for filename, tensors in (extra_tensors or {}).items():
            save_file(tensors, str(tmp / filename))
        faults.hit("checkpoint_write", tmp / "trainer_state.json")
        files = {
            str(p.relative_to(tmp)): {"size": p.stat().st_size, "sha256": _sha256(p)}
            for p in sorted(tmp.rglob("*"))
            if p.is_file()
        }
        write_json(tmp / MANIFEST, {"step": step, "files": files})
        _fsync_tree(tmp)
        faults.hit("checkpoint_write", tmp / MANIFEST)
        if final.exists():
            shutil.rmtree(final)
        os.replace(tmp, final)
        _fsync_dir(root)  # make the rename itself durable
    except SafetensorError as exc:  # a full disk inside safetensors' Rust writer lands here
        shutil.rmtree(tmp, ignore_errors=True)
        raise CheckpointError(f"writing checkpoint {final} failed: {exc}") from exc
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    _rotate(root, keep_last)
    return final


def new_tmp_dir(root: Path, step: int) -> Path:
    """A fresh hidden temp directory beside the final `step-N` (same filesystem: atomic rename)."""
    root.mkdir(parents=True, exist_ok=True)
    return Path(tempfile.mkdtemp(prefix=f".tmp-step-{step}-", dir=root))


def _rotate(root: Path, keep_last: int) -> None:
    """Keep the newest `keep_last` checkpoints that verify and anything newer than the
    oldest of them; delete everything older (broken ones included, so they cannot pile up).
    Fewer than `keep_last` good ones: nothing is deleted. Verification stops as soon as
    `keep_last` good ones are found (it reads every byte; older ones are not worth reading)."""
    found = list_checkpoints(root)
    good = 0
    for i, (_, path) in enumerate(found):
        if verify_checkpoint(path) is None:
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


def verify_checkpoint(path: Path) -> str | None:
    """None when every file in the manifest has its recorded size and sha256, else why not."""
    manifest = path / MANIFEST
    if not manifest.is_file():
        return f"{path}: no {MANIFEST} (incomplete write)"
    try:
        files = json.loads(manifest.read_text(encoding="utf-8"))["files"]
    except (ValueError, KeyError) as exc:
        return f"{manifest}: unreadable manifest ({exc})"
    for name, meta in files.items():
        file = path / name
        if not file.is_file():
            return f"{file}: missing"
        if file.stat().st_size != meta["size"]:
            return f"{file}: size {file.stat().st_size} != {meta['size']} (truncated?)"
        if _sha256(file) != meta["sha256"]:
            return f"{file}: checksum mismatch (altered or corrupted)"
    return None


def latest_checkpoint(root: Path) -> Path | None:
    """Newest checkpoint that verifies; broken newer ones are reported with a warning."""
    for _, path in list_checkpoints(root):
        problem = verify_checkpoint(path)
        if problem is None:
            return path
        warnings.warn(f"skipping checkpoint: {problem}", stacklevel=2)
    return None


def load_tensors(path: Path) -> dict[str, torch.Tensor]:
    return load_file(str(path))


def read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise CheckpointError(f"{path}: cannot read ({exc})") from None
