"""What a vllm engine is fed (`rollout.weight_sync.full_weights`): every weight once under its
HF name, tied heads left to the engine, LoRA merged out of place, FSDP2 shards gathered."""

from __future__ import annotations

import pytest
import torch
import torch.distributed as dist

from mgrpo.models.tiny import build_tiny_model
from mgrpo.models.tokenizer import build_char_tokenizer
from mgrpo.rollout.weight_sync import WeightVersion, full_weights, lora_merge_problem

TOK = build_char_tokenizer()


def test_every_parameter_once_by_name_and_no_buffers():
    model = build_tiny_model(TOK)
    got = dict(full_weights(model))
    params = dict(model.named_parameters())
    assert list(got) == list(params)
    assert all(got[n] is not None and torch.equal(got[n], params[n]) for n in params)
    assert not any("inv_freq" in n for n in got)


def test_a_tied_head_is_left_to_the_engine():
    model = build_tiny_model(TOK)
    model.config.tie_word_embeddings = True
    model.tie_weights()
    names = [n for n, _ in full_weights(model)]
    assert "lm_head.weight" not in names and names.count("model.embed_tokens.weight") == 1


def test_lora_is_merged_out_of_place_under_hf_names():
    peft = pytest.importorskip("peft", reason="pip install 'mgrpo[lora]'")
    plain = build_tiny_model(TOK)
    names = [n for n, _ in plain.named_parameters()]
    model = build_tiny_model(TOK)
    peft.get_peft_model(model, peft.LoraConfig(r=2, lora_alpha=4, target_modules=["q_proj", "down_proj"]))
    with torch.no_grad():
        for n, p in model.named_parameters():
            if "lora_B" in n:
                p.normal_(0, 0.5)
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    got = dict(full_weights(model))
    assert list(got) == names  # the plain model's names, in order: no adapters, no base_layer
    layer = model.model.layers[0].self_attn.q_proj
    expected = layer.base_layer.weight + 2.0 * layer.lora_B["default"].weight @ layer.lora_A["default"].weight
    torch.testing.assert_close(got["model.layers.0.self_attn.q_proj.weight"], expected)
    # the merged model computes what the peft model computes
    merged = build_tiny_model(TOK)
    merged.load_state_dict(got, strict=False)
    ids = torch.tensor([TOK.encode("hello world")])
    with torch.no_grad():
        torch.testing.assert_close(merged(ids).logits, model(ids).logits, atol=1e-5, rtol=0)
    assert all(torch.equal(p, before[n]) for n, p in model.named_parameters())
    assert lora_merge_problem(model) is None
    emb = build_tiny_model(TOK)
    peft.get_peft_model(emb, peft.LoraConfig(r=2, target_modules=["embed_tokens"]))
    assert "cannot be merged" in lora_merge_problem(emb)


def test_fsdp2_shards_are_gathered_whole(monkeypatch):
    from mgrpo.parallel.distributed import init_distributed, shutdown
    from mgrpo.parallel.fsdp import device_mesh, shard_model

    for key in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT"):
        monkeypatch.delenv(key, raising=False)
    ctx = init_distributed(fsdp=True, device="cpu", timeout_s=60)
    try:
        model = build_tiny_model(TOK)
        full = {n: p.detach().clone() for n, p in model.named_parameters()}
        shard_model(model, ctx, param_dtype=torch.float32, trainable=True,
                    mesh=device_mesh(ctx, torch.device("cpu")))
        assert all(hasattr(p, "full_tensor") for p in model.parameters())
        got = dict(full_weights(model))
        assert list(got) == list(full)
        for n, t in got.items():
            assert not hasattr(t, "full_tensor") and torch.equal(t, full[n]), n
    finally:
        shutdown(ctx)
    assert not dist.is_initialized()


def test_weight_version_counts_changes():
    v = WeightVersion()
    assert v.value == 0
    v.bump()
    v.bump()
    assert v.value == 2 and "2" in repr(v)
