"""Memory-aware batching of the fast engine: budget -> prompt chunks, split results."""

from __future__ import annotations

import dataclasses

import pytest
import torch

from mgrpo.config import config_from_dict, load_recipe
from mgrpo.models.tiny import build_tiny_model
from mgrpo.models.tokenizer import build_char_tokenizer
from mgrpo.rollout import RolloutBatch, SamplingParams, make_engine
from mgrpo.rollout.memory import (
    GIB,
    budget_bytes,
    cuda_available_bytes,
    kv_shape,
    prompts_per_chunk,
)
from mgrpo.seeds import chunk_seed

TOK = build_char_tokenizer()
PROMPTS = ["1+2=", "hello world, x", "a", "What is 7*6? Answer:", "zz top"]


def _prompts() -> list[list[int]]:
    return [TOK.encode(p) for p in PROMPTS]


def _model(dtype=torch.float32):
    return build_tiny_model(TOK, arch="qwen3", seed=0, dtype=dtype)


def _per_prompt_bytes(model, n: int, models: int, new: int) -> int:
    longest = max(len(p) for p in _prompts())
    return kv_shape(model.config, torch.float32).prompt_bytes(n * models, models, longest, new)


def _equal(a, b) -> None:
    assert torch.equal(a.response_ids, b.response_ids)
    assert torch.equal(a.response_mask, b.response_mask)
    assert torch.equal(a.logprobs, b.logprobs) and torch.equal(a.entropies, b.entropies)
    assert torch.equal(a.prompt_index, b.prompt_index) and a.finish_reasons == b.finish_reasons


def test_kv_bytes_per_token_of_a_qwen3_shape() -> None:
    cfg = _model().config
    shape = kv_shape(cfg, torch.bfloat16)
    kvh = cfg.num_key_value_heads
    assert shape.kv_bytes_per_token == 2 * cfg.num_hidden_layers * kvh * cfg.head_dim * 2
    # Qwen3-4B: 36 layers x 8 KV heads x 128 x 2 (K, V) x 2 bytes = 144 KiB per token
    qwen3_4b = dataclasses.replace(shape, layers=36, kv_heads=8, head_dim=128)
    assert qwen3_4b.kv_bytes_per_token == 147456


@pytest.mark.parametrize(
    ("per", "budget", "prompts", "expected"),
    [(10, None, 7, 7), (10, 100, 7, 7), (10, 35, 7, 3), (10, 5, 7, 1), (10, 10**9, 1, 1)],
)
def test_prompts_per_chunk(per, budget, prompts, expected) -> None:
    assert prompts_per_chunk(per, budget, prompts) == expected


def test_chunk_seeds_keep_chunk_zero_and_differ_elsewhere() -> None:
    assert chunk_seed(5, 0) == 5
    seeds = {chunk_seed(5, c) for c in range(1, 50)} | {chunk_seed(6, c) for c in range(1, 50)}
    assert len(seeds) == 98 and all(0 <= s < 2**63 for s in seeds)
    assert not seeds & set(range(0, 1000))  # never a nearby seed + b (evaluation batches)


def test_a_budget_that_fits_leaves_the_samples_unchanged() -> None:
    model = _model()
    params = SamplingParams(max_new_tokens=10, temperature=1.0, seed=3)
    plain = make_engine("fast", model, pad_token_id=0).generate(_prompts(), 3, params)
    fits = _per_prompt_bytes(model, 3, 1, 10) * len(PROMPTS) / GIB
    budgeted = make_engine("fast", model, pad_token_id=0, kv_cache_gb=fits)
    assert budgeted.plan_chunks(_prompts(), [3], 10) == len(PROMPTS)
    _equal(budgeted.generate(_prompts(), 3, params), plain)


def test_a_forced_split_equals_separate_calls_per_chunk() -> None:
    model = _model()
    params = SamplingParams(max_new_tokens=10, temperature=1.0, seed=3)
    two = _per_prompt_bytes(model, 3, 1, 10) * 2.5 / GIB  # room for 2 prompts per loop
    split = make_engine("fast", model, pad_token_id=0, kv_cache_gb=two)
    assert split.plan_chunks(_prompts(), [3], 10) == 2
    got = split.generate(_prompts(), 3, params)
    plain = make_engine("fast", model, pad_token_id=0)
    chunks = [_prompts()[i : i + 2] for i in (0, 2, 4)]
    parts = [
        plain.generate(c, 3, dataclasses.replace(params, seed=chunk_seed(3, i)))
        for i, c in enumerate(chunks)
    ]
    _equal(got, RolloutBatch.cat(parts, [2, 2, 1], 0))
    assert got.prompt_index.tolist() == [p for p in range(5) for _ in range(3)]
    # sampled tokens of a split differ from the one-loop samples (one shared generator)
    assert not torch.equal(got.response_ids, plain.generate(_prompts(), 3, params).response_ids)


def test_a_forced_split_keeps_greedy_tokens() -> None:
    model = _model(torch.float64)
    params = SamplingParams(max_new_tokens=10, temperature=0.0)
    one = make_engine("fast", model, pad_token_id=0).generate(_prompts(), 2, params)
    tiny = make_engine("fast", model, pad_token_id=0, kv_cache_gb=1e-9)  # one prompt per loop
    assert tiny.plan_chunks(_prompts(), [2], 10) == 1
    split = tiny.generate(_prompts(), 2, params)
    assert torch.equal(split.response_ids, one.response_ids)
    torch.testing.assert_close(split.logprobs, one.logprobs, rtol=0, atol=1e-10)


def test_joint_generation_splits_every_group_alike() -> None:
    policy, momentum = _model(), build_tiny_model(TOK, arch="qwen3", seed=1)
    params = SamplingParams(max_new_tokens=8, temperature=1.0, seed=4)
    budget = _per_prompt_bytes(policy, 2, 2, 8) * 2.5 / GIB
    a = make_engine("fast", policy, pad_token_id=0, kv_cache_gb=budget)
    b = make_engine("fast", momentum, pad_token_id=0)
    got = a.generate_joint(_prompts(), [(a, 2, params), (b, 2, params)])
    plain = make_engine("fast", policy, pad_token_id=0)
    ref = [
        plain.generate_joint(c, [(plain, 2, p), (b, 2, p)])
        for i, c in enumerate([_prompts()[0:2], _prompts()[2:4], _prompts()[4:]])
        for p in [dataclasses.replace(params, seed=chunk_seed(4, i))]
    ]
    for g in range(2):
        _equal(got[g], RolloutBatch.cat([r[g] for r in ref], [2, 2, 1], 0))


def test_bad_budgets_are_refused() -> None:
    with pytest.raises(ValueError, match="kv_cache_gb"):
        make_engine("fast", _model(), pad_token_id=0, kv_cache_gb=0.0)
    data = load_recipe("tiny")
    data["generation"]["kv_cache_gb"] = -1
    with pytest.raises(ValueError, match="generation.kv_cache_gb"):
        config_from_dict(data)
    assert make_engine("hf", _model(), pad_token_id=0, kv_cache_gb=1.0).name == "hf"


def test_the_cuda_budget_counts_the_allocators_free_reserved_bytes(monkeypatch) -> None:
    gib = 1 << 30
    monkeypatch.setattr(torch.cuda, "mem_get_info", lambda device=None: (10 * gib, 80 * gib))
    monkeypatch.setattr(torch.cuda, "memory_reserved", lambda device=None: 50 * gib)
    monkeypatch.setattr(torch.cuda, "memory_allocated", lambda device=None: 20 * gib)
    cuda = torch.device("cuda", 0)
    assert cuda_available_bytes(cuda) == 40 * gib  # 10 free + (50 - 20) cached
    assert budget_bytes(None, cuda) == int(0.8 * 40 * gib)
    assert budget_bytes(None, cuda, held=5 * gib) == int(0.8 * 45 * gib)
    assert budget_bytes(2.0, cuda) == 2 * gib  # an explicit budget wins
    assert budget_bytes(None, torch.device("cpu")) is None
