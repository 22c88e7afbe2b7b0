"""hf vs fast engines (the live-weight engines): greedy token equality, logprob/entropy agreement, refresh, determinism."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from mgrpo.models.tiny import build_tiny_model
from mgrpo.models.tokenizer import build_char_tokenizer
from mgrpo.rollout import ENGINES, RolloutBatch, SamplingParams, make_engine

TOK = build_char_tokenizer()
PROMPTS = ["1+2=", "hello world, x", "a", "What is 7*6? Answer:"]
ARCHS = ["llama", "qwen2", "qwen3"]
# engines that read the live weights (vllm keeps a copy: tests/rollout/test_rollout_vllm.py)
LIVE_ENGINES = sorted(name for name, cls in ENGINES.items() if not cls.holds_weights_copy)


def _prompts() -> list[list[int]]:
    return [TOK.encode(p) for p in PROMPTS]


def _model(arch: str, dtype=torch.float32, seed: int = 0):
    return build_tiny_model(TOK, arch=arch, seed=seed, dtype=dtype)


def _naive_reference(model, prompt: list[int], response: list[int], temperature: float):
    """Full-logits log p and entropy of `response` given `prompt`, one sequence, no padding."""
    with torch.no_grad():
        logits = model(torch.tensor([prompt + response])).logits[0].float()
    z = logits[len(prompt) - 1 : -1] / temperature  # (T, V)
    logp_all = F.log_softmax(z, dim=-1)
    logp = logp_all.gather(1, torch.tensor(response)[:, None])[:, 0]
    return logp, -(logp_all.exp() * logp_all).sum(-1)


def _check_batch_shape(batch: RolloutBatch, num_prompts: int, n: int) -> None:
    r = num_prompts * n
    assert batch.num_rollouts == r
    assert batch.prompt_index.tolist() == [i for i in range(num_prompts) for _ in range(n)]
    assert batch.response_mask.dtype == torch.bool and batch.logprobs.dtype == torch.float32
    assert torch.equal(batch.lengths, batch.response_mask.sum(1))
    # right-padded: mask is a prefix; padding carries pad id and zeros
    assert torch.equal(batch.response_mask, batch.response_mask.cummin(1).values)
    assert (batch.response_ids[~batch.response_mask] == TOK.pad_token_id).all()
    assert (batch.logprobs[~batch.response_mask] == 0).all()
    assert (batch.entropies[~batch.response_mask] == 0).all()
    assert len(batch.finish_reasons) == r and set(batch.finish_reasons) <= {"stop", "length"}


@pytest.mark.parametrize("arch", ARCHS)
def test_greedy_fast_matches_hf_generate(arch):
    # fp64 so argmax ties between two code paths cannot flip a token
    model = _model(arch, dtype=torch.float64)
    hf = make_engine("hf", model, pad_token_id=TOK.pad_token_id)
    fast = make_engine("fast", model, pad_token_id=TOK.pad_token_id, check_every=2)
    prompts, n = _prompts(), 2
    plain = SamplingParams(max_new_tokens=16, temperature=0)
    a = hf.generate(prompts, n, plain)
    # a stop token seen mid-way in some (not all) greedy responses forces early stops
    stop = int(a.response_ids[0, 5])
    params = SamplingParams(max_new_tokens=16, temperature=0, stop_token_ids=(stop,))
    a, b = hf.generate(prompts, n, params), fast.generate(prompts, n, params)
    _check_batch_shape(b, len(prompts), n)
    assert torch.equal(a.response_ids, b.response_ids)
    assert torch.equal(a.response_mask, b.response_mask)
    assert a.finish_reasons == b.finish_reasons
    assert "stop" in b.finish_reasons and "length" in b.finish_reasons
    # the hf engine scores at T = 1 for greedy; the fast engine uses its decode logits
    torch.testing.assert_close(a.logprobs, b.logprobs, atol=1e-5, rtol=0)
    torch.testing.assert_close(a.entropies, b.entropies, atol=1e-5, rtol=0)


@pytest.mark.parametrize("arch", ARCHS)
@pytest.mark.parametrize("engine", LIVE_ENGINES)
def test_generate_logprobs_match_score_and_naive_reference(arch, engine):
    model = _model(arch)
    eng = make_engine(engine, model, pad_token_id=TOK.pad_token_id, score_chunk_tokens=7)
    prompts, n, temp = _prompts()[:3], 3, 0.8
    params = SamplingParams(max_new_tokens=10, temperature=temp, seed=5, stop_token_ids=(70, 80))
    batch = eng.generate(prompts, n, params)
    _check_batch_shape(batch, len(prompts), n)
    per_rollout = [prompts[i] for i in batch.prompt_index.tolist()]
    logp, ent = eng.score(per_rollout, batch.response_ids, batch.response_mask, temp)
    torch.testing.assert_close(batch.logprobs, logp, atol=2e-5, rtol=0)
    torch.testing.assert_close(batch.entropies, ent, atol=2e-5, rtol=0)
    for r in range(batch.num_rollouts):
        length = int(batch.lengths[r])
        ref_lp, ref_ent = _naive_reference(
            model, per_rollout[r], batch.response_ids[r, :length].tolist(), temp
        )
        torch.testing.assert_close(batch.logprobs[r, :length], ref_lp, atol=2e-5, rtol=0)
        torch.testing.assert_close(batch.entropies[r, :length], ref_ent, atol=2e-5, rtol=0)


@pytest.mark.parametrize("engine", LIVE_ENGINES)
def test_deterministic_for_seed_and_seed_matters(engine):
    eng = make_engine(engine, _model("llama"), pad_token_id=TOK.pad_token_id)
    prompts = _prompts()[:2]
    p = SamplingParams(max_new_tokens=12, temperature=1.2, top_p=0.95, top_k=40, seed=11)
    state = torch.random.get_rng_state()
    a, b = eng.generate(prompts, 4, p), eng.generate(prompts, 4, p)
    assert torch.equal(state, torch.random.get_rng_state())  # global RNG untouched
    assert torch.equal(a.response_ids, b.response_ids) and torch.equal(a.logprobs, b.logprobs)
    c = eng.generate(prompts, 4, SamplingParams(max_new_tokens=12, temperature=1.2, seed=12))
    assert not torch.equal(a.response_ids, c.response_ids)
    # samples of one prompt differ from each other (prefill shared, noise not)
    assert len({tuple(x) for x in a.response_ids[:4].tolist()}) > 1


@pytest.mark.parametrize("engine", LIVE_ENGINES)
def test_weight_refresh_in_place_is_seen(engine):
    model = _model("qwen3")
    donor = _model("qwen3", seed=1)
    eng = make_engine(engine, model, pad_token_id=TOK.pad_token_id)
    params = SamplingParams(max_new_tokens=8, temperature=0)
    before = eng.generate(_prompts(), 1, params)
    with torch.no_grad():  # an in-place update, like optimizer.step() / EMA
        for p, q in zip(model.parameters(), donor.parameters(), strict=True):
            p.copy_(q)
    after = eng.generate(_prompts(), 1, params)
    expected = make_engine(engine, donor, pad_token_id=TOK.pad_token_id).generate(
        _prompts(), 1, params
    )
    assert not torch.equal(before.response_ids, after.response_ids)
    assert torch.equal(after.response_ids, expected.response_ids)
    torch.testing.assert_close(after.logprobs, expected.logprobs)


def test_fast_compaction_does_not_change_results():
    model = _model("llama", dtype=torch.float64)
    prompts = _prompts()
    probe = make_engine("hf", model, pad_token_id=0).generate(
        prompts, 1, SamplingParams(max_new_tokens=12, temperature=0)
    )
    stops = tuple({int(probe.response_ids[i, 2 + i]) for i in range(3)})
    params = SamplingParams(max_new_tokens=12, temperature=1.0, seed=3, stop_token_ids=stops)
    never = make_engine("fast", model, pad_token_id=0, check_every=100, compact_ratio=1e-9)
    often = make_engine("fast", model, pad_token_id=0, check_every=1, compact_ratio=1.0)
    greedy = SamplingParams(max_new_tokens=12, temperature=0, stop_token_ids=stops)
    a, b = never.generate(prompts, 3, greedy), often.generate(prompts, 3, greedy)
    assert torch.equal(a.response_ids, b.response_ids) and a.finish_reasons == b.finish_reasons
    assert "stop" in a.finish_reasons
    torch.testing.assert_close(a.logprobs, b.logprobs)
    # sampled runs are valid batches either way (noise is drawn per live row)
    _check_batch_shape(often.generate(prompts, 3, params), len(prompts), 3)


def test_batch_to_and_bad_input():
    model = _model("llama")
    eng = make_engine("fast", model, pad_token_id=0)
    params = SamplingParams(max_new_tokens=4)
    batch = eng.generate(_prompts()[:1], 2, params).to("cpu")
    assert batch.num_rollouts == 2
    with pytest.raises(ValueError, match="prompt_token_ids"):
        eng.generate([], 2, params)
    with pytest.raises(ValueError, match=r"prompt_token_ids\[1\]"):
        eng.generate([[5, 6], []], 2, params)
    with pytest.raises(ValueError, match="prompt_token_ids"):
        eng.generate([[5] * 1024], 1, params)
    with pytest.raises(ValueError, match="max_new_tokens"):
        eng.generate([[5] * 1000], 1, SamplingParams(max_new_tokens=100))
    with pytest.raises(ValueError, match="n must"):
        eng.generate([[5]], 0, params)
    with pytest.raises(ValueError, match="temperature"):
        SamplingParams(max_new_tokens=4, temperature=-0.1)
    with pytest.raises(ValueError, match="max_new_tokens"):
        SamplingParams(max_new_tokens=0)
    with pytest.raises(ValueError, match="top_p"):
        SamplingParams(max_new_tokens=4, top_p=0.0)
    with pytest.raises(ValueError, match="unknown rollout engine 'sglang'; valid names: fast, hf, vllm"):
        make_engine("sglang", model, pad_token_id=0)


def test_unsupported_architecture_falls_back_to_hf():
    from transformers import GPT2Config, GPT2LMHeadModel

    cfg = GPT2Config(vocab_size=len(TOK), n_embd=32, n_layer=1, n_head=2, n_positions=64)
    cfg.eos_token_id = TOK.eos_token_id
    with torch.random.fork_rng():
        torch.manual_seed(0)
        gpt2 = GPT2LMHeadModel(cfg).eval()
    with pytest.warns(UserWarning, match="falling back to the hf engine"):
        eng = make_engine("fast", gpt2, pad_token_id=0, check_every=4)
    assert eng.name == "hf"
    batch = eng.generate(_prompts()[:2], 2, SamplingParams(max_new_tokens=5, temperature=0))
    _check_batch_shape(batch, 2, 2)


def test_static_step_form_matches_hf():
    """The CUDA-graph/compile form of the step (full-cache masked attention, device column,
    power-of-two compaction buckets) run eagerly on CPU gives the same greedy tokens."""
    model = _model("qwen3", dtype=torch.float64)
    prompts = _prompts()[:3]
    hf = make_engine("hf", model, pad_token_id=0)
    probe = hf.generate(prompts, 3, SamplingParams(max_new_tokens=12, temperature=0))
    stops = (int(probe.response_ids[0, 3]), int(probe.response_ids[3, 6]))
    params = SamplingParams(max_new_tokens=12, temperature=0, stop_token_ids=stops)
    # attn_bucket=4: the step attends over growing 4-column prefixes of the cache
    fast = make_engine("fast", model, pad_token_id=0, check_every=1, attn_bucket=4)
    fast.static = True
    a, b = hf.generate(prompts, 3, params), fast.generate(prompts, 3, params)
    assert torch.equal(a.response_ids, b.response_ids) and a.finish_reasons == b.finish_reasons
    assert len(set(b.lengths.tolist())) > 1
    torch.testing.assert_close(a.logprobs, b.logprobs, atol=1e-5, rtol=0)
