"""Model layouts: the layout a config picks and the models it builds, and a checkpoint of
another model stopping a resume with one TrainingError naming the checkpoint (full weights,
mixed precision, LoRA)."""

from __future__ import annotations

import re

import pytest
import torch

from mgrpo.config import config_from_dict, load_recipe
from mgrpo.train.layout.layouts import FullLayout, LoraLayout, MixedLayout
from mgrpo.train.run.resume import restore_run, save_run
from mgrpo.train.run.trainer import TrainingError, build_run

LORA = {"lora": {"r": 4, "alpha": 8.0}}
MIXED = {"dtype": "bfloat16"}  # bf16 compute over the default fp32 master, on the CPU


def _cfg(model: dict, **more_model):
    data = load_recipe("tiny")
    data["model"].update({**model, **more_model})
    data["trainer"].update({"progress": False, "threads": 1})
    data["validation"] = {"data": None}
    return config_from_dict(data)


def _needs(model: dict) -> None:
    if "lora" in model:
        pytest.importorskip("peft")


@pytest.mark.parametrize("model, layout", [
    ({}, FullLayout),
    (MIXED, MixedLayout),
    ({"dtype": "bfloat16", "master_dtype": "bfloat16"}, FullLayout),  # pure bf16: one dtype
    (LORA, LoraLayout),
], ids=["fp32", "mixed", "pure-bf16", "lora"])
def test_config_picks_the_layout_and_its_models(tmp_path, model, layout):
    _needs(model)
    run = build_run(_cfg(model), tmp_path / "run")
    models = run.models
    assert type(run.layout) is layout
    generator = models.momentum.generator
    if layout is LoraLayout:  # one model: momentum adapters are swapped in to sample
        assert generator is models.policy and models.policy_full is None
    else:
        assert generator is not models.policy
        policy_dtypes = {p.dtype for p in models.policy.parameters()}
        assert {p.dtype for p in generator.parameters()} == ({torch.bfloat16}
                                                             if model else policy_dtypes)
    if layout is MixedLayout:  # fp32 master trains under autocast; a bf16 copy samples
        assert {p.dtype for p in models.policy.parameters()} == {torch.float32}
        assert {p.dtype for p in models.policy_full.parameters()} == {torch.bfloat16}
        assert models.train_autocast == torch.bfloat16 and models.after_update is not None
    else:
        assert models.policy_full is None and models.train_autocast is None
    assert all(m.dtype == torch.float32 for m in models.momentum.master)


@pytest.mark.parametrize("model", [{}, MIXED, LORA], ids=["fp32", "mixed", "lora"])
def test_checkpoint_of_another_model_stops_the_resume_naming_it(tmp_path, model):
    """One decoder layer saved, two expected: the restore names the checkpoint and the
    first missing tensors instead of loading part of the weights."""
    _needs(model)
    small = build_run(_cfg(model, tiny_layers=1), tmp_path / "small")
    path = save_run(small, 1, {"bad_steps": 0, "summary": {}})
    other = build_run(_cfg(model, tiny_layers=2), tmp_path / "other")
    with pytest.raises(TrainingError, match=re.escape(str(path))) as info:
        restore_run(other, path)
    assert "layers.1" in str(info.value)
