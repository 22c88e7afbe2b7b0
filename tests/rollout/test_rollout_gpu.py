"""CUDA checks of the fast engine: graph replay == eager, bf16 sanity, fp32 greedy == hf."""

from __future__ import annotations

import pytest
import torch

from mgrpo.models.tiny import build_tiny_model
from mgrpo.models.tokenizer import build_char_tokenizer
from mgrpo.rollout import SamplingParams, make_engine

TOK = build_char_tokenizer()
pytestmark = pytest.mark.gpu


def _prompts():
    return [TOK.encode(p) for p in ("1+2=", "hello world, x", "a", "What is 7*6?")]


def test_cuda_graph_matches_eager_and_hf_fp32():
    model = build_tiny_model(TOK, arch="qwen3", hidden_size=128, num_layers=3).cuda()
    hf = make_engine("hf", model, pad_token_id=0)
    probe = hf.generate(_prompts(), 2, SamplingParams(max_new_tokens=24, temperature=0))
    stop = int(probe.response_ids[0, 6])
    params = SamplingParams(max_new_tokens=24, temperature=0, stop_token_ids=(stop,))
    graphed = make_engine("fast", model, pad_token_id=0, check_every=2, attn_bucket=8)
    eager = make_engine("fast", model, pad_token_id=0, cuda_graph=False)
    assert graphed.cuda_graph and not eager.cuda_graph
    a, b, c = (e.generate(_prompts(), 2, params) for e in (hf, graphed, eager))
    assert torch.equal(a.response_ids, c.response_ids)
    assert torch.equal(b.response_ids, c.response_ids)
    torch.testing.assert_close(b.logprobs, c.logprobs, atol=1e-4, rtol=0)
    torch.testing.assert_close(a.logprobs, b.logprobs, atol=1e-4, rtol=0)


def test_cuda_bf16_sampling_and_weight_refresh():
    model = build_tiny_model(TOK, arch="llama", dtype=torch.bfloat16).cuda()
    eng = make_engine("fast", model, pad_token_id=0)
    params = SamplingParams(max_new_tokens=16, temperature=1.0, seed=1)
    a, b = eng.generate(_prompts(), 4, params), eng.generate(_prompts(), 4, params)
    assert torch.equal(a.response_ids, b.response_ids)
    assert torch.isfinite(a.logprobs).all() and (a.logprobs <= 0).all()
    logp, _ = eng.score(
        [_prompts()[i] for i in a.prompt_index.tolist()], a.response_ids, a.response_mask, 1.0
    )
    assert (logp - a.logprobs).abs().max() < 0.1  # bf16 decode vs bf16 scoring pass
    with torch.no_grad():
        model.lm_head.weight.mul_(-1.0)  # in place: the captured graphs must see it
    c = eng.generate(_prompts(), 4, params)
    assert not torch.equal(a.response_ids, c.response_ids)


def test_cuda_graphs_one_logits_buffer_and_reuse_across_calls():
    model = build_tiny_model(TOK, arch="qwen3", hidden_size=128, num_layers=3).cuda()
    params = SamplingParams(max_new_tokens=24, temperature=1.0, seed=2)
    kept = make_engine("fast", model, pad_token_id=0, check_every=2, attn_bucket=8,
                       keep_workspace=True)
    eager = make_engine("fast", model, pad_token_id=0, cuda_graph=False)
    first = kept.generate(_prompts(), 2, params)
    cache = kept.graphs
    captured = cache.captures
    assert captured > 1 and cache.graphs_alive == captured and cache.buffers_alive == 1
    second = kept.generate(_prompts(), 2, params)  # same shapes: every graph replayed
    assert cache.captures == captured and cache.hits > 0
    assert torch.equal(first.response_ids, second.response_ids)
    greedy = SamplingParams(max_new_tokens=24, temperature=0)
    a, b = kept.generate(_prompts(), 2, greedy), eager.generate(_prompts(), 2, greedy)
    assert torch.equal(a.response_ids, b.response_ids)
    kept.release_workspace()
    assert cache.graphs_alive == 0 and cache.buffers_alive == 0
