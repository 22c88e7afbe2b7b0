"""Memory pre-flight: a run whose static state (weights, gradients, AdamW, EMA master, copies)
cannot fit on its device is refused before any copy is built or anything generated, with
the estimate and what to change; the formulas per layout (CPU, device capacity faked)."""

from __future__ import annotations

import pytest
import torch

import mgrpo.train.layout.memory_budget as budget
from mgrpo.config import config_from_dict, load_recipe
from mgrpo.train.layout.memory_budget import GIB, preflight, static_bytes
from mgrpo.train.run.trainer import TrainingError, build_run

QWEN3_4B = 4_022_468_096  # parameters (benchmarks/memory_model.py)


def _cfg(**model):
    data = load_recipe("tiny")
    data["model"].update(model)
    data["trainer"].update(progress=False, threads=1)
    data["validation"] = {"data": None}
    return config_from_dict(data)


def test_a_run_that_cannot_fit_is_refused_before_anything_is_built(tmp_path, monkeypatch):
    monkeypatch.setattr(budget, "device_capacity", lambda device: 100_000)  # bytes
    built = []
    monkeypatch.setattr("mgrpo.train.layout.layouts.MixedLayout.build",
                        lambda self, policy: built.append(policy))
    with pytest.raises(TrainingError) as info:
        build_run(_cfg(dtype="bfloat16"), tmp_path / "run")  # mixed: fp32 master, bf16 copies
    message = str(info.value)
    assert message.startswith("memory pre-flight: the mixed layout holds ~")
    assert "B/param" in message and "fp32 master" in message and "AdamW" in message
    assert "model.lora.r > 0" in message and "--nproc" in message
    assert "model.master_dtype=bfloat16" in message
    assert built == []  # refused before the layout built its copies


def test_a_run_that_fits_or_a_device_of_unknown_size_passes(tmp_path, monkeypatch):
    assert budget.device_capacity(torch.device("cpu")) is None  # CPU: no check
    build_run(_cfg(), tmp_path / "cpu")
    monkeypatch.setattr(budget, "device_capacity", lambda device: 80 * GIB)
    build_run(_cfg(dtype="bfloat16"), tmp_path / "fits")


def test_the_paper_recipe_on_one_80_gb_gpu_is_refused_with_26_bytes_per_param():
    mixed = static_bytes("mixed", params=QWEN3_4B, trainable=QWEN3_4B, reference=True)
    assert sum(mixed.values()) == 26 * QWEN3_4B
    cuda = torch.device("cuda", 0)
    shape = dict(params=QWEN3_4B, trainable=QWEN3_4B, compute=2, master=4, momentum=True,
                 reference=True)
    budget_80 = lambda device: 80 * GIB  # noqa: E731
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(budget, "device_capacity", budget_80)
        message = preflight("mixed", cuda, world=1, **shape)
        assert message is not None and "~97.4 GiB" in message and "26.0 B/param" in message
        # FSDP over 8 GPUs: 22 P / 8 + two bf16 generators 4 P = 26.8 GB per GPU: fits
        assert preflight("sharded", cuda, world=8, **shape) is None


@pytest.mark.parametrize("kind, per_param", [
    ("full", 4 + 4 + 8 + 4 + 4),  # fp32 policy, grads, AdamW, generator, fp32 reference
    ("mixed", 4 + 4 + 8 + 2 + 2 + 4 + 2),
    ("sharded", 2 + 2 + (4 + 4 + 8 + 4 + 2) / 2),  # W = 2
])
def test_static_bytes_per_layout(kind, per_param):
    p = 1_000_000
    compute = 4 if kind == "full" else 2
    terms = static_bytes(kind, params=p, trainable=p, world=2, compute=compute, master=4,
                         momentum=True, reference=True)
    assert sum(terms.values()) == per_param * p
    lora = static_bytes("lora", params=p, trainable=p // 100, compute=2, master=4)
    assert sum(lora.values()) == 2 * p + (16 + 4) * (p // 100)
    with pytest.raises(ValueError, match="unknown layout kind 'fsdp'"):
        static_bytes("fsdp", params=p, trainable=p)
