"""One decode loop for several models (`FastEngine.generate_joint`) and the decoder's weight
paths (direct / fused / module calls): each must give what separate HF-checked runs give."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from mgrpo.models.tiny import build_tiny_model
from mgrpo.models.tokenizer import build_char_tokenizer
from mgrpo.rollout import SamplingParams, make_engine
from mgrpo.rollout.decoder import build_plan, direct_path_reason

TOK = build_char_tokenizer()
PROMPTS = [TOK.encode(p) for p in ["1+2=", "hello world, x", "a", "What is 7*6? Answer:"]]
ARCHS = ["llama", "qwen2", "qwen3"]


def _model(arch: str, seed: int, dtype=torch.float64):
    # fp64: argmax ties between two code paths cannot flip a greedy token
    return build_tiny_model(TOK, arch=arch, seed=seed, dtype=dtype)


def _stops(engine, prompts, n=1) -> tuple[int, ...]:
    """Tokens some (not all) greedy responses emit mid-way: early stops in both models."""
    probe = engine.generate(prompts, n, SamplingParams(max_new_tokens=12, temperature=0))
    return (int(probe.response_ids[0, 3]), int(probe.response_ids[-1, 6]))


def _assert_same(a, b, atol=1e-6):
    assert torch.equal(a.response_ids, b.response_ids)
    assert torch.equal(a.response_mask, b.response_mask)
    assert a.finish_reasons == b.finish_reasons
    assert torch.equal(a.prompt_index, b.prompt_index)
    torch.testing.assert_close(a.logprobs, b.logprobs, atol=atol, rtol=0)
    torch.testing.assert_close(a.entropies, b.entropies, atol=atol, rtol=0)


@pytest.mark.parametrize("arch", ARCHS)
@pytest.mark.parametrize("static", [False, True])
def test_joint_greedy_equals_separate_runs(arch, static):
    """Greedy tokens, logprobs and entropies of each group equal a separate `generate` of
    that model (itself pinned to HF `generate` elsewhere), with early stops, compaction and
    (static) the power-of-two per-group buckets of the CUDA-graph step form."""
    policy, momentum = _model(arch, 0), _model(arch, 1)
    opts = dict(pad_token_id=0, check_every=1, compact_ratio=1.0, attn_bucket=4)
    a, b = make_engine("fast", policy, **opts), make_engine("fast", momentum, **opts)
    a.static = b.static = static
    stops = _stops(a, PROMPTS) + _stops(b, PROMPTS)
    params = SamplingParams(max_new_tokens=12, temperature=0, stop_token_ids=stops)
    joint_a, joint_b = a.generate_joint(PROMPTS, [(a, 3, params), (b, 2, params)])
    _assert_same(joint_a, a.generate(PROMPTS, 3, params))
    _assert_same(joint_b, b.generate(PROMPTS, 2, params))
    assert "stop" in joint_a.finish_reasons + joint_b.finish_reasons
    assert len(set(joint_a.lengths.tolist() + joint_b.lengths.tolist())) > 1


def test_joint_sampling_reports_each_models_logprobs_and_is_seeded():
    """Sampled joint rows: each group's reported log-probs are its OWN model's (teacher-forced
    `score`), and the same seed gives the same samples."""
    policy, momentum = _model("qwen3", 0, torch.float32), _model("qwen3", 5, torch.float32)
    a, b = make_engine("fast", policy, pad_token_id=0), make_engine("fast", momentum, pad_token_id=0)
    params = SamplingParams(max_new_tokens=10, temperature=0.9, seed=11)
    out_a, out_b = a.generate_joint(PROMPTS, [(a, 4, params), (b, 3, params)])
    for engine, out, n in ((a, out_a, 4), (b, out_b, 3)):
        prompts = [PROMPTS[i] for i in out.prompt_index.tolist()]
        logp, ent = engine.score(prompts, out.response_ids, out.response_mask, 0.9)
        torch.testing.assert_close(out.logprobs, logp, atol=2e-5, rtol=0)
        torch.testing.assert_close(out.entropies, ent, atol=2e-5, rtol=0)
        assert out.num_rollouts == len(PROMPTS) * n
    again_a, again_b = a.generate_joint(PROMPTS, [(a, 4, params), (b, 3, params)])
    assert torch.equal(out_a.response_ids, again_a.response_ids)
    assert torch.equal(out_b.response_ids, again_b.response_ids)


def test_joint_sees_in_place_weight_updates():
    """An EMA-style in-place update of the second model shows in the next joint call."""
    policy, momentum = _model("llama", 0), _model("llama", 1)
    donor = _model("llama", 2)
    a, b = make_engine("fast", policy, pad_token_id=0), make_engine("fast", momentum, pad_token_id=0)
    params = SamplingParams(max_new_tokens=8, temperature=0)
    _, before = a.generate_joint(PROMPTS, [(a, 1, params), (b, 1, params)])
    with torch.no_grad():
        for p, q in zip(momentum.parameters(), donor.parameters(), strict=True):
            p.copy_(q)
    _, after = a.generate_joint(PROMPTS, [(a, 1, params), (b, 1, params)])
    expected = make_engine("fast", donor, pad_token_id=0).generate(PROMPTS, 1, params)
    assert not torch.equal(before.response_ids, after.response_ids)
    _assert_same(after, expected)


def test_joint_bad_input_names_the_group():
    a = make_engine("fast", _model("llama", 0), pad_token_id=0)
    b = make_engine("fast", _model("llama", 1), pad_token_id=0)
    other = make_engine("fast", build_tiny_model(TOK, arch="llama", seed=0, num_layers=3,
                                                 dtype=torch.float64), pad_token_id=0)
    hf = make_engine("hf", _model("llama", 1), pad_token_id=0)
    p = SamplingParams(max_new_tokens=4, temperature=1.0)
    with pytest.raises(ValueError, match="groups must"):
        a.generate_joint(PROMPTS, [])
    with pytest.raises(ValueError, match=r"groups\[1\].*temperature"):
        a.generate_joint(PROMPTS, [(a, 2, p), (b, 2, SamplingParams(max_new_tokens=4, temperature=0.5))])
    with pytest.raises(ValueError, match=r"groups\[1\].*num_hidden_layers"):
        a.generate_joint(PROMPTS, [(a, 2, p), (other, 2, p)])
    with pytest.raises(ValueError, match=r"groups\[1\].*FastEngine"):
        a.generate_joint(PROMPTS, [(a, 2, p), (hf, 2, p)])
    with pytest.raises(ValueError, match="n must"):
        a.generate_joint(PROMPTS, [(a, 2, p), (b, 0, p)])
    # only the seed may differ
    a.generate_joint(PROMPTS, [(a, 1, p), (b, 1, SamplingParams(max_new_tokens=4, seed=9))])


class _WrappedLinear(nn.Module):
    """Stands in for an adapter-wrapped projection (e.g. LoRA): not a plain nn.Linear."""

    def __init__(self, inner: nn.Linear) -> None:
        super().__init__()
        self.inner = inner

    def forward(self, x):
        return self.inner(x)


@pytest.mark.parametrize("arch", ARCHS)
def test_direct_fused_and_module_paths_agree_with_hf(arch):
    """The three ways the decoder reads weights give HF's greedy tokens: direct + fused q/k/v
    and gate/up, direct unfused (the default), and module calls (a wrapped projection)."""
    model = _model(arch, 3)
    hf = make_engine("hf", model, pad_token_id=0)
    params = SamplingParams(max_new_tokens=10, temperature=0)
    expected = hf.generate(PROMPTS, 2, params)
    for fuse in (True, False):
        fast = make_engine("fast", model, pad_token_id=0, fuse_weights=fuse)
        plan = build_plan(model, fuse=fuse)
        assert plan.direct and plan.fused == fuse
        _assert_same(fast.generate(PROMPTS, 2, params), expected, atol=1e-5)
    layer = model.base_model.layers[0]
    layer.self_attn.q_proj = _WrappedLinear(layer.self_attn.q_proj)
    assert "not a plain nn.Linear" in direct_path_reason(model)
    assert not build_plan(model, fuse=True).direct
    fast = make_engine("fast", model, pad_token_id=0)
    _assert_same(fast.generate(PROMPTS, 2, params), hf.generate(PROMPTS, 2, params), atol=1e-5)
