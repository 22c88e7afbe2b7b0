"""Checkpoints: corruption is detected, rotation keeps a good one, write failures lose nothing,
and planted pickles are never executed.

Unit tests call `save_checkpoint` on a tiny model in process (fast); the end-to-end ones drive
`mgrpo train tiny` subprocesses with `MGRPO_FAULT` injecting ENOSPC / EACCES.
"""

from __future__ import annotations

import errno
import json
import os
import pickle
import resource
import signal
import warnings
from pathlib import Path

import pytest
import torch
from reliability_runs import checkpoint_steps, metrics, run_train

from mgrpo.models.tiny import build_tiny_model
from mgrpo.models.tokenizer import build_char_tokenizer
from mgrpo.train.run.checkpoint import (
    MANIFEST_FILE,
    CheckpointError,
    _rotate,
    _sha256,
    latest_checkpoint,
    save_checkpoint,
    verify_checkpoint,
)

CORRUPTED_FILES = ("model.safetensors", "optimizer.safetensors", "momentum.safetensors",
                   "trainer_state.json", "optimizer.json", "tokenizer.json", "config.json",
                   "rng.safetensors")


@pytest.fixture(scope="module")
def parts():
    tok = build_char_tokenizer()
    model = build_tiny_model(tok, hidden_size=16, num_layers=1, num_heads=2, num_kv_heads=1,
                             intermediate_size=32, seed=0)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
    model(torch.tensor([[1, 5, 6]])).logits.sum().backward()
    opt.step()
    return model, tok, opt


def save(root: Path, step: int, parts, keep_last: int = 10) -> Path:
    model, tok, opt = parts
    momentum = {k: v.detach().float().clone() for k, v in model.state_dict().items()}
    return save_checkpoint(
        root, step, model=model, tokenizer=tok, optimizer=opt,
        trainer_state={"step": step}, momentum=momentum, keep_last=keep_last,
        extra_tensors={"rng.safetensors": {"torch": torch.get_rng_state()}},
    )


def _latest(root: Path) -> tuple[Path | None, list[str]]:
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        found = latest_checkpoint(root)
    return found, [str(w.message) for w in caught]


def truncate(path: Path) -> None:
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])


def flip_byte(path: Path) -> None:
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0x01
    path.write_bytes(bytes(data))


CORRUPTIONS = {"truncated": truncate, "altered": flip_byte, "deleted": Path.unlink}
EXPECTED = {"truncated": "truncated?", "altered": "checksum mismatch", "deleted": "missing"}


@pytest.mark.parametrize("how", sorted(CORRUPTIONS))
@pytest.mark.parametrize("name", CORRUPTED_FILES)
def test_corrupted_file_is_detected_and_the_previous_checkpoint_used(tmp_path, parts, name, how):
    root = tmp_path / "checkpoints"
    first, second = save(root, 1, parts), save(root, 2, parts)
    CORRUPTIONS[how](second / name)
    problem = verify_checkpoint(second)
    assert problem is not None and name in problem and EXPECTED[how] in problem, problem
    found, messages = _latest(root)
    assert found == first
    assert any("skipping checkpoint" in m and name in m for m in messages), messages


@pytest.mark.parametrize("how", ["truncated", "deleted", "not json"])
def test_broken_manifest_is_detected(tmp_path, parts, how):
    root = tmp_path / "checkpoints"
    first, second = save(root, 1, parts), save(root, 2, parts)
    manifest = second / MANIFEST_FILE
    if how == "truncated":
        truncate(manifest)
    elif how == "deleted":
        manifest.unlink()
    else:
        manifest.write_text("[1, 2")
    assert verify_checkpoint(second) is not None
    assert _latest(root)[0] == first


def test_rotation_keeps_last_k_good_and_never_the_only_good_one(tmp_path, parts):
    root = tmp_path / "checkpoints"
    for step in range(1, 5):
        save(root, step, parts, keep_last=2)
    assert checkpoint_steps(tmp_path) == [3, 4]
    # A newer checkpoint rots on disk; the next save with keep_last=1 must keep a good one.
    flip_byte(root / "step-4" / "model.safetensors")
    _rotate(root, keep_last=1)
    assert checkpoint_steps(tmp_path) == [3, 4]  # step-3 is the only good one: kept
    assert _latest(root)[0] == root / "step-3"
    save(root, 3, parts, keep_last=1)  # rewriting a step replaces it; step-4 stays broken
    assert verify_checkpoint(root / "step-3") is None
    assert _latest(root)[0] == root / "step-3"
    save(root, 5, parts, keep_last=1)  # a good newer one: everything older may go
    assert checkpoint_steps(tmp_path) == [5]
    # keep_last larger than the number of good ones deletes nothing.
    save(root, 6, parts, keep_last=3)
    assert checkpoint_steps(tmp_path) == [5, 6]


class _FailingTokenizer:
    """Writes half a file, then fails like a full disk or a read-only directory."""

    def __init__(self, code: int) -> None:
        self.code = code

    def save_pretrained(self, path) -> None:
        (Path(path) / "tokenizer.json").write_text('{"partial": ')
        raise OSError(self.code, os.strerror(self.code), str(Path(path) / "tokenizer.json"))


@pytest.mark.parametrize("code", [errno.ENOSPC, errno.EACCES])
def test_failed_write_leaves_previous_checkpoint_intact(tmp_path, parts, code):
    root = tmp_path / "checkpoints"
    first = save(root, 1, parts)
    model, _, opt = parts
    with pytest.raises(OSError) as info:
        save_checkpoint(root, 2, model=model, tokenizer=_FailingTokenizer(code), optimizer=opt,
                        trainer_state={"step": 2})
    assert info.value.errno == code
    assert checkpoint_steps(tmp_path) == [1] and not list(root.glob(".tmp-*"))
    assert verify_checkpoint(first) is None
    from transformers import AutoModelForCausalLM

    AutoModelForCausalLM.from_pretrained(first)


def test_real_file_size_limit_error_leaves_previous_checkpoint_intact(tmp_path, parts):
    """A real OS write failure (RLIMIT_FSIZE -> EFBIG), not an injected one."""
    root = tmp_path / "checkpoints"
    first = save(root, 1, parts)
    limit = first.joinpath("model.safetensors").stat().st_size // 2
    soft, hard = resource.getrlimit(resource.RLIMIT_FSIZE)
    old_handler = signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
    resource.setrlimit(resource.RLIMIT_FSIZE, (limit, hard))
    try:
        with pytest.raises((OSError, CheckpointError)) as info:
            save(root, 2, parts)
    finally:
        resource.setrlimit(resource.RLIMIT_FSIZE, (soft, hard))
        signal.signal(signal.SIGXFSZ, old_handler)
    assert "file too large" in str(info.value).lower()  # safetensors' Rust I/O error, wrapped
    assert checkpoint_steps(tmp_path) == [1] and not list(root.glob(".tmp-*"))
    assert _latest(root)[0] == first


# ------------------------------------------------------------------ end to end (subprocesses)


def test_disk_full_and_permission_denied_stop_cleanly_then_resume(tmp_path):
    out = tmp_path / "run"
    # ENOSPC during step 2's checkpoint (8th checkpoint_write hit: after its tokenizer files).
    proc = run_train(out, fault="checkpoint_write:8:enospc")
    assert proc.returncode == 1, proc.stderr[-2000:]
    last = proc.stderr.strip().splitlines()[-1]
    assert last.startswith("mgrpo train: error: I/O failure ") and "No space left on device" in last
    assert "checkpoints/step-1 is intact" in last and "Traceback" not in proc.stderr
    assert checkpoint_steps(out) == [1] and not list((out / "checkpoints").glob(".tmp-*"))
    assert verify_checkpoint(out / "checkpoints" / "step-1") is None
    # EACCES writing the metrics line of step 2 of the resumed run.
    proc = run_train(out, fault="metrics_write:1:eacces")
    assert proc.returncode == 1, proc.stderr[-2000:]
    last = proc.stderr.strip().splitlines()[-1]
    assert "Permission denied" in last and "metrics.jsonl" in last and "step-1 is intact" in last
    assert checkpoint_steps(out) == [1]
    # Space is back: resume finishes the run.
    proc = run_train(out)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert [r["step"] for r in metrics(out)] == [0, 1, 2, 3]


class _Payload:
    """Unpickling this runs `open(marker, 'w')` (a stand-in for arbitrary code)."""

    def __init__(self, marker: Path) -> None:
        self.marker = str(marker)

    def __reduce__(self):
        return (eval, (f"open({self.marker!r}, 'w').write('pwned')",))


PICKLE_NAMES = ("optimizer.pt", "scheduler.pt", "rng_state.pth", "training_args.bin",
                "pytorch_model.bin", "trainer_state.pkl")


def plant_pickles(ckpt: Path, marker: Path) -> None:
    """Malicious pickles, listed in a rewritten manifest so the checkpoint still verifies."""
    for name in PICKLE_NAMES:
        (ckpt / name).write_bytes(pickle.dumps(_Payload(marker)))
    manifest = json.loads((ckpt / MANIFEST_FILE).read_text())
    for name in PICKLE_NAMES:
        manifest["files"][name] = {"size": (ckpt / name).stat().st_size, "sha256": _sha256(ckpt / name)}
    (ckpt / MANIFEST_FILE).write_text(json.dumps(manifest))
    assert verify_checkpoint(ckpt) is None


def test_corrupt_newest_checkpoint_resume_and_planted_pickles_never_run(tmp_path):
    out = tmp_path / "run"
    assert run_train(out).returncode == 0
    before = metrics(out)
    flip_byte(out / "checkpoints" / "step-3" / "model.safetensors")
    marker = tmp_path / "PWNED"
    plant_pickles(out / "checkpoints" / "step-2", marker)
    proc = run_train(out)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "step-3/model.safetensors: checksum mismatch" in proc.stderr
    assert "resumed from" in proc.stderr and "step-2 (step 2)" in proc.stderr
    rows = metrics(out)
    strip = [{k: v for k, v in r.items() if not k.startswith("time/")} for r in rows]
    assert strip == [{k: v for k, v in r.items() if not k.startswith("time/")} for r in before]
    assert not marker.exists()


def test_model_loading_refuses_pickled_weights(tmp_path, parts):
    """A checkpoint holding only a pickled `pytorch_model.bin` is refused, payload not run."""
    ckpt = save(tmp_path / "checkpoints", 1, parts)
    marker = tmp_path / "PWNED"
    plant_pickles(ckpt, marker)
    (ckpt / "model.safetensors").unlink()
    from mgrpo.models.loading import load_model_and_tokenizer

    with pytest.raises(Exception):  # noqa: B017 - any refusal will do, as long as it refuses
        load_model_and_tokenizer(str(ckpt), device="cpu")
    assert not marker.exists()
    with pytest.raises(pickle.UnpicklingError):
        torch.load(ckpt / "optimizer.pt", weights_only=True)
    assert not marker.exists()
