"""The inference copies of a run (bf16 generator, reference, momentum generator): RoPE's
`inv_freq` stays fp32 on every copy, a bf16 copy scores exactly like the master loaded with
`from_pretrained(dtype=bf16)`, and the momentum model is built one tensor at a time (the
policy is never deep-copied in its own dtype first)."""

from __future__ import annotations

import pytest
import torch
from torch import nn
from transformers import AutoModelForCausalLM

from mgrpo.config import config_from_dict, load_recipe
from mgrpo.models.tiny import build_tiny_model
from mgrpo.models.tokenizer import build_char_tokenizer
from mgrpo.train.layout.momentum import MomentumModel
from mgrpo.train.layout.precision import inference_twin
from mgrpo.train.run.trainer import build_run

TOK = build_char_tokenizer()


def _float_buffers(model: nn.Module) -> dict[str, torch.Tensor]:
    return {n: b for n, b in model.named_buffers() if b.is_floating_point()}


def test_every_bf16_copy_of_a_mixed_precision_run_keeps_fp32_rope_tables(tmp_path):
    data = load_recipe("tiny")
    data["model"]["dtype"] = "bfloat16"  # bf16 compute over the fp32 master, on the CPU
    data["algorithm"]["kl_coef"] = 0.01  # a reference copy too
    data["trainer"].update(progress=False, threads=1)
    data["validation"] = {"data": None}
    models = build_run(config_from_dict(data), tmp_path / "run").models
    copies = {"policy_full": models.policy_full, "reference": models.reference,
              "momentum": models.momentum.generator}
    for role, copy_ in copies.items():
        assert {p.dtype for p in copy_.parameters()} == {torch.bfloat16}, role
        tables = _float_buffers(copy_)
        assert any("inv_freq" in n for n in tables), role
        for name, buf in tables.items():
            assert buf.dtype == torch.float32, (role, name)


@pytest.mark.parametrize("arch", ["qwen3", "llama"])
def test_a_bf16_copy_scores_like_the_master_loaded_in_bf16(tmp_path, arch):
    """from_pretrained(dtype=bf16) keeps inv_freq fp32; the copies must rotate the same way,
    so their logits are bit-identical at every position (200 tokens, where a bf16 table
    would already have turned the angles)."""
    master = build_tiny_model(TOK, arch=arch, seed=0, dtype=torch.float32)
    master.save_pretrained(tmp_path / "m")
    loaded = AutoModelForCausalLM.from_pretrained(tmp_path / "m", dtype=torch.bfloat16).eval()
    assert loaded.model.rotary_emb.inv_freq.dtype == torch.float32
    ids = torch.randint(4, len(TOK), (1, 200), generator=torch.Generator().manual_seed(0))
    twin = inference_twin(master, device=torch.device("cpu"), dtype=torch.bfloat16)
    momentum = MomentumModel(master, generator_dtype=torch.bfloat16).generator
    with torch.no_grad():
        expected = loaded(ids).logits
        for copy_ in (twin, momentum):
            assert torch.equal(copy_(ids).logits, expected)


def test_momentum_model_never_deep_copies_the_policy(monkeypatch):
    """A deep copy of an fp32 policy on the GPU is a transient +4 B/param; the generator is
    materialised one tensor at a time in its own dtype instead."""
    policy = build_tiny_model(TOK, arch="qwen3", seed=0, dtype=torch.float32)
    copied: list[int] = []
    original = nn.Parameter.__deepcopy__

    def counting(self, memo):
        copied.append(self.numel())
        return original(self, memo)

    monkeypatch.setattr(nn.Parameter, "__deepcopy__", counting)
    for dtype in (None, torch.bfloat16):
        momentum = MomentumModel(policy, generator_dtype=dtype)
        gen = dict(momentum.generator.named_parameters())
        for name, p in policy.named_parameters():  # a copy of the policy, own storage
            assert torch.equal(gen[name], p.detach().to(gen[name].dtype))
            assert gen[name].data_ptr() != p.data_ptr()
        assert all(m.dtype == torch.float32 for m in momentum.master)
    assert copied == []
