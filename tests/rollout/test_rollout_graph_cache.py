"""CUDA-graph bookkeeping on CPU: one logits buffer, a bounded graph cache, reuse across calls.

The engine's static step runs through `GraphCache` with `capture_eager` (replay = run the
step again), so every cache decision the CUDA path makes is exercised here without a GPU.
"""

from __future__ import annotations

import pytest
import torch

from mgrpo.models.tiny import build_tiny_model
from mgrpo.models.tokenizer import build_char_tokenizer
from mgrpo.rollout import SamplingParams, make_engine
from mgrpo.rollout.cuda_graph import GraphCache, capture_eager

TOK = build_char_tokenizer()
PROMPTS = ["1+2=", "hello world, x", "a", "What is 7*6? Answer:"]
PARAMS = SamplingParams(max_new_tokens=12, temperature=1.0, seed=5)


def _prompts(k: int = 4) -> list[list[int]]:
    return [TOK.encode(p) for p in PROMPTS[:k]]


def _model():
    return build_tiny_model(TOK, arch="qwen3", seed=0, dtype=torch.float64)


def _graphed(model, *, keep: bool, max_graphs: int = 256):
    engine = make_engine("fast", model, pad_token_id=0, check_every=2, attn_bucket=4,
                         keep_workspace=keep, fuse_weights=False)
    engine.static = True  # the CUDA-graph form of the step, on CPU
    engine.graphs = GraphCache(max_graphs, capture=capture_eager)
    return engine


def _static(model):
    engine = make_engine("fast", model, pad_token_id=0, check_every=2, attn_bucket=4,
                         fuse_weights=False)
    engine.static = True
    return engine


def _same(a, b) -> None:
    assert torch.equal(a.response_ids, b.response_ids)
    assert torch.equal(a.logprobs, b.logprobs) and torch.equal(a.entropies, b.entropies)


def test_graphed_steps_equal_the_plain_static_step_and_are_reused_across_calls() -> None:
    model = _model()
    plain = _static(model)
    graphed = _graphed(model, keep=True)
    first = graphed.generate(_prompts(), 3, PARAMS)
    _same(first, plain.generate(_prompts(), 3, PARAMS))
    cache = graphed.graphs
    captured = cache.captures
    assert captured > 1 and cache.graphs_alive == captured
    assert cache.buffers_alive == 1  # ONE logits buffer for every graph
    assert cache.logits.shape == (12, model.config.vocab_size)
    cfg, ws = model.config, graphed._workspace  # 12 rows x 256 positions (rounded up), fp64
    per_layer = 12 * cfg.num_key_value_heads * 256 * cfg.head_dim * 8
    assert ws.length == 256 and ws.nbytes == 2 * cfg.num_hidden_layers * per_layer
    # same shapes again (stale cache contents from the first call are masked): no capture
    second = graphed.generate(_prompts(), 3, PARAMS)
    _same(second, first)
    assert cache.captures == captured and cache.hits > 0 and cache.resets == 0
    # another seed, same shapes: still replays the graphs captured by the first call
    other = SamplingParams(max_new_tokens=12, temperature=1.0, seed=6)
    _same(graphed.generate(_prompts(), 3, other), plain.generate(_prompts(), 3, other))
    # a smaller call fits the workspace; every graph it needs with the old shapes is reused
    _same(graphed.generate(_prompts(2), 3, PARAMS), plain.generate(_prompts(2), 3, PARAMS))
    assert cache.resets == 0


def test_the_cache_is_bounded_and_a_larger_call_resets_it() -> None:
    model = _model()
    graphed = _graphed(model, keep=True, max_graphs=2)
    _same(graphed.generate(_prompts(), 3, PARAMS), _static(model).generate(_prompts(), 3, PARAMS))
    cache = graphed.graphs
    assert cache.captures > 2 and cache.graphs_alive == 2 and cache.buffers_alive == 1
    graphed.generate(_prompts(), 4, PARAMS)  # 16 rows > the workspace's 12: new workspace
    assert cache.resets == 1 and cache.logits.shape[0] == 16 and cache.graphs_alive <= 2


def test_without_keep_workspace_nothing_outlives_a_call() -> None:
    graphed = _graphed(_model(), keep=False)
    graphed.generate(_prompts(), 3, PARAMS)
    assert graphed.graphs.graphs_alive == 0 and graphed.graphs.buffers_alive == 0
    assert graphed._workspace is None
    first = graphed.graphs.captures
    graphed.generate(_prompts(), 3, PARAMS)
    assert graphed.graphs.captures == 2 * first  # captured again: nothing was kept


def test_another_model_set_gets_its_own_graphs() -> None:
    model, other = _model(), build_tiny_model(TOK, arch="qwen3", seed=1, dtype=torch.float64)
    graphed = _graphed(model, keep=True)
    partner = make_engine("fast", other, pad_token_id=0)
    graphed.generate(_prompts(), 2, PARAMS)
    alone = graphed.graphs.captures
    joint = graphed.generate_joint(_prompts(), [(graphed, 2, PARAMS), (partner, 2, PARAMS)])
    assert graphed.graphs.captures > alone  # different parameter addresses: new keys
    ref = _static(model)
    _same(joint[0], ref.generate_joint(_prompts(), [(ref, 2, PARAMS), (partner, 2, PARAMS)])[0])


def test_bad_cache_size_is_refused() -> None:
    with pytest.raises(ValueError, match="max_graphs"):
        GraphCache(0)


def test_keeping_workspace_reuses_graphs_inside_the_block_and_frees_them_after() -> None:
    graphed = _graphed(_model(), keep=False)
    with graphed.keeping_workspace():
        first = graphed.generate(_prompts(), 3, PARAMS)
        captured = graphed.graphs.captures
        _same(graphed.generate(_prompts(), 3, PARAMS), first)
        assert graphed.graphs.captures == captured and graphed.graphs.graphs_alive == captured
    assert not graphed.keep_workspace and graphed._workspace is None
    assert graphed.graphs.graphs_alive == 0 and graphed.graphs.buffers_alive == 0


def _random_norms(model, seed: int = 0) -> None:
    """Every RMSNorm weight drawn in [0.5, 1.5] (the tiny models' all-ones norms would hide a
    stale copy of them)."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "norm" in name:
                p.copy_(0.5 + torch.rand(p.shape, generator=gen, dtype=p.dtype))


def test_graphs_replayed_after_an_in_place_norm_update_read_the_new_qk_norm_weights() -> None:
    model = _model()
    _random_norms(model)
    graphed = _graphed(model, keep=True)
    graphed.generate(_prompts(), 3, PARAMS)
    captured = graphed.graphs.captures
    attn = model.model.layers[0].self_attn
    with torch.no_grad():  # in place, like the trainer's updates: same addresses
        attn.q_norm.weight.mul_(1.7)
        attn.k_norm.weight.add_(0.3)
    _same(graphed.generate(_prompts(), 3, PARAMS), _static(model).generate(_prompts(), 3, PARAMS))
    assert graphed.graphs.captures == captured  # replayed, not recaptured
    assert graphed._plans.builds == 1  # derived tensors rewritten in place, not rebuilt


def test_fused_copies_are_kept_and_refreshed_in_place_so_graphs_replay_current_weights() -> None:
    model = _model()
    _random_norms(model, seed=1)
    graphed = _graphed(model, keep=True)
    graphed.fuse_weights = True
    graphed.generate(_prompts(), 3, PARAMS)
    captured = graphed.graphs.captures
    gen = torch.Generator().manual_seed(2)
    with torch.no_grad():
        for layer in model.model.layers:
            w = layer.self_attn.q_proj.weight
            w.add_(0.05 * torch.randn(w.shape, generator=gen, dtype=w.dtype))
            layer.self_attn.q_norm.weight.mul_(0.8)
    fresh = _static(model)
    fresh.fuse_weights = True
    _same(graphed.generate(_prompts(), 3, PARAMS), fresh.generate(_prompts(), 3, PARAMS))
    assert graphed.graphs.captures == captured  # the fused copies kept their addresses


def test_a_replaced_parameter_is_a_new_plan_and_new_graphs() -> None:
    model = _model()
    graphed = _graphed(model, keep=True)
    graphed.generate(_prompts(), 3, PARAMS)
    captured = graphed.graphs.captures
    norm = model.model.layers[1].self_attn.k_norm
    norm.weight = torch.nn.Parameter(norm.weight.detach() * 1.3)  # another tensor
    _same(graphed.generate(_prompts(), 3, PARAMS), _static(model).generate(_prompts(), 3, PARAMS))
    assert graphed.graphs.captures > captured and graphed._plans.builds == 2


def test_a_training_engine_keeps_its_graphs_across_steps_of_in_place_updates() -> None:
    model = _model()
    _random_norms(model, seed=3)
    # built as the trainer builds it (no keep_workspace): graphs imply a kept workspace
    engine = make_engine("fast", model, pad_token_id=0, check_every=2, attn_bucket=4,
                         kv_cache_gb=None, fuse_weights=False)
    engine.static = True
    engine.graphs = GraphCache(capture=capture_eager)
    assert engine.keep_workspace
    engine.generate(_prompts(), 3, PARAMS)
    captured = engine.graphs.captures
    assert captured > 1
    for step in range(2):  # an optimizer-like in-place update of every weight, then a rollout
        with torch.no_grad():
            for p in model.parameters():
                p.mul_(1.0 + 0.01 * (step + 1))
        params = SamplingParams(max_new_tokens=12, temperature=1.0, seed=7 + step)
        _same(engine.generate(_prompts(), 3, params), _static(model).generate(_prompts(), 3, params))
    assert engine.graphs.captures == captured and engine.graphs.resets == 0
    engine.keep_workspace = False  # an explicit False still frees everything after a call
    engine.generate(_prompts(), 3, PARAMS)
    assert engine._workspace is None and engine.graphs.graphs_alive == 0
