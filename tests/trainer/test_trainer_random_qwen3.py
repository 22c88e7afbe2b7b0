"""The shipped GPU-check recipe (`qwen3-0.6b-random`) trains on a CPU at its smoke size."""

from __future__ import annotations

import json

import pytest
import torch
from safetensors.torch import load_file

from mgrpo.config import resolve_config
from mgrpo.models.random_qwen3 import QWEN3_SHAPES
from mgrpo.train.run.trainer import train

SMOKE = ["model.name=qwen3-random-smoke", "trainer.max_steps=1", "trainer.prompts_per_step=2",
         "generation.max_new_tokens=8", "trainer.threads=1"]


def test_recipe_has_qwen3_0_6b_shapes():
    cfg = resolve_config("qwen3-0.6b-random")
    assert cfg.model.name == "qwen3-0.6b-random"
    shape = QWEN3_SHAPES[cfg.model.name]
    assert (shape["num_hidden_layers"], shape["hidden_size"], shape["vocab_size"]) == (28, 1024, 151936)


@pytest.mark.parametrize("dtype", ["float32", "bfloat16"])
def test_recipe_trains_one_step_at_smoke_size(tmp_path, dtype):
    cfg = resolve_config("qwen3-0.6b-random", [*SMOKE, f"model.dtype={dtype}"])
    out = train(cfg, tmp_path / "run")
    rows = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in rows] == [1] and rows[0]["grad_norm"] >= 0
    ckpt = out / "checkpoints" / "step-1"
    exported = load_file(str(ckpt / "model.safetensors"))
    assert {v.dtype for v in exported.values()} == {getattr(torch, dtype)}
    assert (ckpt / "master.safetensors").is_file() == (dtype == "bfloat16")
