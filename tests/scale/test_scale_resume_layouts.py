"""A checkpoint resumed with the other data-parallel layout: an FSDP checkpoint (sharded/
shards, no momentum.safetensors or optimizer files) resumed without FSDP stops with one
TrainingError saying how to resume it (1-rank gloo group, CPU)."""

from __future__ import annotations

import pytest
import torch.distributed as dist

from mgrpo.config import config_from_dict, load_recipe
from mgrpo.parallel.distributed import shutdown
from mgrpo.train.run.resume import restore_run, save_run
from mgrpo.train.run.trainer import TrainingError, build_run


def _cfg(fsdp: bool):
    data = load_recipe("tiny")
    data["trainer"].update(progress=False, threads=1)
    data["validation"] = {"data": None}
    data["distributed"] = {"fsdp": fsdp, "timeout_s": 60}
    return config_from_dict(data)


def test_fsdp_checkpoint_resumed_without_fsdp_names_the_fix(tmp_path, monkeypatch):
    for key in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT"):
        monkeypatch.delenv(key, raising=False)
    sharded = build_run(_cfg(True), tmp_path / "fsdp")
    try:
        path = save_run(sharded, 1, {"bad_steps": 0, "summary": {}})
    finally:
        shutdown(sharded.models.dist)
    assert not dist.is_initialized()
    assert (path / "sharded").is_dir() and not (path / "momentum.safetensors").exists()
    replicated = build_run(_cfg(False), tmp_path / "replicated")
    with pytest.raises(TrainingError, match=r"written with FSDP \(resume it with "
                                            r"distributed.fsdp=true\)"):
        restore_run(replicated, path)
