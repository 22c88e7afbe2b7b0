"""LoRA (model.lora.r > 0): adapters-only EMA, no second full model, export, resume state."""

from __future__ import annotations

import pytest
import torch

from mgrpo.config import config_from_dict, load_recipe
from mgrpo.train.run.trainer import build_run
from mgrpo.train.step import StepBatch, train_step

pytest.importorskip("peft")


def _cfg(**over):
    data = load_recipe("tiny")
    data["model"]["lora"] = {"r": 4, "alpha": 8.0, **over}
    data["data"]["answer_kind"] = "number"  # random text often ends in a digit: real rewards
    data["trainer"]["progress"] = False
    data["validation"] = {"data": None}
    return config_from_dict(data)


def _step(run, cfg, step=1):
    records, ids = run.train_set.batch(step, cfg.trainer.prompts_per_step)
    return train_step(run.models, StepBatch(ids, [r.answer for r in records]), cfg, run.spec, step)


def test_ema_touches_only_adapter_tensors_and_base_is_shared(tmp_path):
    cfg = _cfg()
    run = build_run(cfg, tmp_path / "run")
    policy, momentum = run.models.policy, run.models.momentum
    assert momentum.names and all("lora_" in n for n in momentum.names)
    frozen_before = {n: p.detach().clone() for n, p in policy.named_parameters() if not p.requires_grad}
    adapters_before = [p.detach().clone() for n, p in policy.named_parameters() if p.requires_grad]
    master_before = [t.clone() for t in momentum.master]
    metrics = _step(run, cfg)
    assert metrics["grad_norm"] > 0
    # the base never moves (neither by the optimizer nor by the momentum swap)
    for n, p in policy.named_parameters():
        if not p.requires_grad:
            assert torch.equal(p, frozen_before[n]), n
    adapters_after = [p.detach() for n, p in policy.named_parameters() if p.requires_grad]
    assert any(not torch.equal(a, b) for a, b in zip(adapters_before, adapters_after))
    m = cfg.algorithm.momentum
    for master, a0, a1 in zip(momentum.master, master_before, adapters_after):
        torch.testing.assert_close(master, m * a0 + (1 - m) * a1.float(), rtol=1e-6, atol=1e-7)
    # the momentum master is exactly one adapter copy, and the generator IS the policy model
    assert sum(t.numel() for t in momentum.master) == sum(t.numel() for t in adapters_after)
    assert momentum.generator is policy


def test_kl_reference_is_the_base_with_adapters_disabled_no_second_model(tmp_path):
    from mgrpo.train.layout.lora import count_parameters

    cfg = _cfg()
    assert cfg.algorithm.kl_coef > 0
    run = build_run(cfg, tmp_path / "run")
    models = run.models
    adapter = sum(p.numel() for p in models.policy.parameters() if p.requires_grad)
    base = sum(p.numel() for p in models.policy.parameters() if not p.requires_grad)
    assert 0 < adapter < base
    # distinct parameter storages across policy, reference and momentum generator = one model
    assert count_parameters(models.policy, models.reference, models.momentum.generator) == base + adapter
    master = sum(t.numel() for t in models.momentum.master)
    assert master == adapter  # the only extra copy: the adapters' fp32 EMA
    # with adapters disabled the reference scores exactly like the untouched base model
    with torch.no_grad():
        for p in models.policy.parameters():
            if p.requires_grad:
                p.add_(0.5)  # make the adapters matter
    ids = torch.tensor([[5, 6, 7, 8]])
    with torch.no_grad():
        adapted = models.policy(input_ids=ids).logits
        with models.reference_scope():
            ref = models.reference(input_ids=ids).logits
    plain = build_run(config_from_dict({**load_recipe("tiny"), "validation": {"data": None}}),
                      tmp_path / "plain").models.policy
    with torch.no_grad():
        base_logits = plain(input_ids=ids).logits
    torch.testing.assert_close(ref, base_logits)
    assert not torch.allclose(adapted, base_logits)


def test_momentum_engine_samples_with_momentum_adapters_then_restores(tmp_path):
    cfg = _cfg()
    run = build_run(cfg, tmp_path / "run")
    models = run.models
    adapters = [p for p in models.policy.parameters() if p.requires_grad]
    with torch.no_grad():
        for t in models.momentum.master:
            t.add_(1.0)
    before = [p.detach().clone() for p in adapters]
    seen = []
    inner = models.momentum_engine.engine
    real = inner.generate

    def spy(*args, **kwargs):
        seen.append([p.detach().clone() for p in adapters])
        return real(*args, **kwargs)

    inner.generate = spy
    _, ids = run.train_set.batch(1, 1)
    from mgrpo.rollout import SamplingParams

    models.momentum_engine.generate(ids, n=2, params=SamplingParams(max_new_tokens=4, seed=0))
    for inside, master in zip(seen[0], models.momentum.master):
        assert torch.equal(inside, master)  # sampled with the EMA adapters
    for p, b in zip(adapters, before):
        assert torch.equal(p, b)  # and the policy's adapters came back


@pytest.mark.parametrize("mode", ["merge", "adapters"])
def test_export_merges_or_saves_adapters(tmp_path, mode):
    from transformers import AutoModelForCausalLM

    from mgrpo.train.layout.lora import LoraExport

    cfg = _cfg(export=mode)
    run = build_run(cfg, tmp_path / "run")
    models = run.models
    with torch.no_grad():
        for p in models.policy.parameters():
            if p.requires_grad:
                p.normal_(0, 0.05, generator=torch.Generator().manual_seed(0))
    out = tmp_path / "export"
    run.layout.lora_export.save_pretrained(out)  # what checkpoints write
    ids = torch.tensor([[5, 6, 7, 8, 9]])
    with torch.no_grad():
        expected = models.policy(input_ids=ids).logits
    if mode == "merge":
        loaded = AutoModelForCausalLM.from_pretrained(out)
        assert not any("lora" in n for n, _ in loaded.named_parameters())
        with torch.no_grad():
            torch.testing.assert_close(loaded(input_ids=ids).logits, expected, rtol=1e-4, atol=1e-5)
    else:
        assert (out / "adapter_model.safetensors").is_file() and (out / "adapter_config.json").is_file()
        assert isinstance(run.layout.lora_export, LoraExport)


def test_lora_resume_restores_adapters(tmp_path):
    """A checkpoint holds the adapters (lora.safetensors); resuming reloads them exactly."""
    from mgrpo.train.run.resume import restore_run, save_run

    cfg = _cfg()
    run = build_run(cfg, tmp_path / "run")
    _step(run, cfg)
    path = save_run(run, 1, {"bad_steps": 0, "summary": {}})
    assert (path / "lora.safetensors").is_file()
    saved = [p.detach().clone() for p in run.models.policy.parameters() if p.requires_grad]
    master = [t.clone() for t in run.models.momentum.master]
    again = build_run(cfg, tmp_path / "run", resume=True)
    restore_run(again, path)
    for p, s in zip([p for p in again.models.policy.parameters() if p.requires_grad], saved):
        assert torch.equal(p, s)
    for a, b in zip(again.models.momentum.master, master):
        assert torch.equal(a, b)
