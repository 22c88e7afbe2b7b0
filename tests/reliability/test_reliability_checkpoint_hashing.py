"""Each checkpoint file is hashed once per save: the manifest's hashes are computed while
writing, and rotation and the end-of-run summary reuse them (at 8B a checkpoint is ~37 GB,
and every re-read keeps the other ranks waiting in a barrier)."""

from __future__ import annotations

import hashlib
import json

import pytest

import mgrpo.train.run.checkpoint as checkpoint
import mgrpo.train.run.resume as resume
from mgrpo.config import config_from_dict, load_recipe
from mgrpo.train.run.trainer import train


class _CountingHashlib:
    """`hashlib` as seen by the checkpoint module, counting the bytes fed to sha256."""

    def __init__(self) -> None:
        self.bytes = 0

    def sha256(self, *args):
        inner, counter = hashlib.sha256(*args), self

        class Counted:
            def update(self, data) -> None:
                counter.bytes += len(data)
                inner.update(data)

            def hexdigest(self) -> str:
                return inner.hexdigest()

        return Counted()


@pytest.mark.parametrize("keep_last", [1, 2])
def test_bytes_hashed_per_save_are_at_most_the_checkpoint(tmp_path, monkeypatch, keep_last):
    counting = _CountingHashlib()
    monkeypatch.setattr(checkpoint, "hashlib", counting)
    written: list[int] = []  # bytes of each checkpoint written (from its manifest)
    save = resume.save_checkpoint

    def recording(*args, **kwargs):
        path = save(*args, **kwargs)
        manifest = json.loads((path / checkpoint.MANIFEST_FILE).read_text())
        written.append(sum(f["size"] for f in manifest["files"].values()))
        return path

    monkeypatch.setattr(resume, "save_checkpoint", recording)
    data = load_recipe("tiny")
    data["trainer"].update(progress=False, threads=1, max_steps=3, save_every=1,
                           keep_last=keep_last)
    data["validation"] = {"data": None}
    out = train(config_from_dict(data), tmp_path / "run")
    assert len(written) == 3 and counting.bytes > 0
    assert counting.bytes <= sum(written)  # each file of each save read once
    # a checkpoint altered after it was hashed is still caught
    (out / "checkpoints/step-3/trainer_state.json").write_text("{}")
    assert "trainer_state.json" in (checkpoint.verify_checkpoint(out / "checkpoints/step-3") or "")
