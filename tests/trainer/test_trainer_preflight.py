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


def _paper_4b_backward(keep: bool) -> dict[str, int]:
    """Qwen3-4B, the paper's rollout (1 prompt x 32 rows, 512 + 3072 positions), FSDP."""
    return budget.backward_bytes("sharded", rows=32, length=512 + 3072, layers=36, kv_heads=8,
                                 head_dim=128, vocab=151936, hidden=2560, compute=2, master=4,
                                 keep_workspace=keep)


def test_the_kept_kv_workspace_and_the_lm_head_gradients_count_in_the_preflight():
    terms = _paper_4b_backward(keep=True)
    # K and V: 2 x 36 layers x 8 heads x 128 x 2 bytes = 144 KiB per position, 3,584 positions
    # (already a multiple of 256) x 32 rows, plus the graphs' fp32 logits buffer
    assert terms["KV workspace kept between steps"] == 32 * (147456 * 3584 + 4 * 151936)
    # fp32 accumulator + a bf16 product + the bf16 result: 8 bytes per head weight
    assert terms["LM-head gradient temporaries"] == 8 * 151936 * 2560
    assert sum(terms.values()) / GIB == pytest.approx(18.66, abs=0.01)
    cuda = torch.device("cuda", 0)
    shape = dict(params=QWEN3_4B, trainable=QWEN3_4B, world=8, compute=2, master=4,
                 momentum=True, reference=True)
    static = sum(static_bytes("sharded", **shape).values())  # 23.4 GiB: fits 40 GiB alone
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(budget, "device_capacity", lambda device: 40 * GIB)
        assert static < 40 * GIB
        message = preflight("sharded", cuda, **shape, backward=terms)
        assert message is not None and "KV workspace kept between steps 15.8 GiB" in message
        assert "generation.keep_workspace=false): -15.8 GiB" in message
        assert preflight("sharded", cuda, **shape, backward=_paper_4b_backward(keep=False)) is None


def test_a_lora_head_is_frozen_and_an_fp32_master_needs_no_cast_copy():
    shape = dict(rows=4, length=100, layers=2, kv_heads=2, head_dim=8, vocab=1000, hidden=64,
                 compute=2, master=4, keep_workspace=False)
    assert budget.backward_bytes("lora", **shape) == {}
    mixed = budget.backward_bytes("mixed", **shape)["LM-head gradient temporaries"]
    full32 = budget.backward_bytes("full", **{**shape, "compute": 4})
    assert mixed == (4 + 2) * 1000 * 64  # fp32 master under bf16 autocast: no result cast
    assert full32["LM-head gradient temporaries"] == (4 + 4) * 1000 * 64
    kv = budget.kv_workspace_bytes(rows=4, length=100, layers=2, kv_heads=2, head_dim=8,
                                   vocab=1000, itemsize=2)
    assert kv == 4 * (2 * 2 * 2 * 8 * 2 * 256 + 4 * 1000)  # 100 positions rounded up to 256
