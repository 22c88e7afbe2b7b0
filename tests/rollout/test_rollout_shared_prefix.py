"""Shared-prompt-prefix scoring: running each distinct prompt once and expanding its KV cache
gives the same log-probs, entropies and parameter gradients as the full per-row forward."""

from __future__ import annotations

import pytest
import torch

from mgrpo.models.tiny import build_tiny_model
from mgrpo.models.tokenizer import build_char_tokenizer
from mgrpo.rollout import score_responses

TOK = build_char_tokenizer()
ARCHS = ["llama", "qwen2", "qwen3"]


def _rows(seed: int = 0):
    """7 rows over 3 distinct prompts of different lengths, in a non-grouped order, with
    right-padded responses of different lengths (one of length 1)."""
    prompts = [TOK.encode(p) for p in ["What is 2+2?", "x", "Answer: 17*3 ="]]
    order = [0, 0, 2, 1, 0, 2, 1]
    g = torch.Generator().manual_seed(seed)
    t = 9
    ids = torch.randint(3, len(TOK), (len(order), t), generator=g)
    lengths = torch.tensor([9, 4, 1, 7, 9, 3, 5])
    mask = torch.arange(t)[None] < lengths[:, None]
    return [prompts[i] for i in order], ids.masked_fill(~mask, 0), mask


def _loss_and_grads(model, prompts, ids, mask, share: bool, temperature: float):
    model.zero_grad(set_to_none=True)
    logp, ent = score_responses(
        model, prompts, ids, mask, temperature, with_grad=True, share_prefix=share, chunk_tokens=5
    )
    weights = torch.linspace(0.5, 2.0, logp.numel(), dtype=logp.dtype).view_as(logp)
    (logp * weights).sum().backward()
    grads = {n: p.grad.detach().clone() for n, p in model.named_parameters()}
    return logp.detach(), ent, grads


# The models are fp64, but HF's RMSNorm normalises in fp32, so two summation orders can
# differ by fp32 rounding (~1e-7 relative) where a value sits on a rounding boundary.
FP32_LEVEL = dict(atol=1e-6, rtol=1e-6)


@pytest.mark.parametrize("arch", ARCHS)
def test_shared_prefix_equals_full_forward_values_and_gradients(arch):
    model = build_tiny_model(TOK, arch=arch, seed=1, dtype=torch.float64)
    prompts, ids, mask = _rows()
    lp_full, ent_full, g_full = _loss_and_grads(model, prompts, ids, mask, False, 0.7)
    lp_shared, ent_shared, g_shared = _loss_and_grads(model, prompts, ids, mask, True, 0.7)
    torch.testing.assert_close(lp_shared, lp_full, **FP32_LEVEL)
    torch.testing.assert_close(ent_shared, ent_full, **FP32_LEVEL)
    assert (lp_shared[~mask] == 0).all() and (ent_shared[~mask] == 0).all()
    assert g_full.keys() == g_shared.keys()
    for name, grad in g_full.items():
        torch.testing.assert_close(g_shared[name], grad, **FP32_LEVEL, msg=name)


def test_shared_prefix_no_grad_and_all_distinct_prompts():
    model = build_tiny_model(TOK, arch="llama", seed=2, dtype=torch.float64)
    prompts, ids, mask = _rows(3)
    full = score_responses(model, prompts, ids, mask, 1.0, share_prefix=False)
    shared = score_responses(model, prompts, ids, mask, 1.0, share_prefix=True)
    for a, b in zip(full, shared, strict=True):
        torch.testing.assert_close(a, b, **FP32_LEVEL)
    distinct = [p + [5 + i] for i, p in enumerate(prompts)]  # no sharing possible: full path
    torch.testing.assert_close(
        score_responses(model, distinct, ids, mask, 1.0, share_prefix=True)[0],
        score_responses(model, distinct, ids, mask, 1.0, share_prefix=False)[0],
    )


def test_shared_prefix_with_gradient_checkpointing_falls_back_to_full_forward():
    """HF turns the KV cache off under gradient checkpointing in train mode: no cache comes
    back, so scoring runs the full forward and stays correct."""
    model = build_tiny_model(TOK, arch="llama", seed=4, dtype=torch.float64)
    prompts, ids, mask = _rows(5)
    expected = _loss_and_grads(model, prompts, ids, mask, False, 1.0)
    model.gradient_checkpointing_enable()
    model.train()
    got = _loss_and_grads(model, prompts, ids, mask, True, 1.0)
    torch.testing.assert_close(got[0], expected[0], **FP32_LEVEL)
    for name, grad in expected[2].items():
        torch.testing.assert_close(got[2][name], grad, **FP32_LEVEL, msg=name)


def test_gradient_checkpointing_in_training_skips_the_wasted_prompt_pass():
    model = build_tiny_model(TOK, arch="qwen3", seed=2, dtype=torch.float64)
    prompts, ids, mask = _rows(seed=3)
    model.eval()  # reference: the shared-prefix path, no checkpointing
    lp_ref, ent_ref, g_ref = _loss_and_grads(model, prompts, ids, mask, True, 0.9)
    model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
    model.train()
    forwards = []
    hook = model.base_model.register_forward_pre_hook(lambda *_: forwards.append(1))
    try:
        lp, ent, grads = _loss_and_grads(model, prompts, ids, mask, True, 0.9)
    finally:
        hook.remove()
    assert len(forwards) == 1  # one full forward; no prompt pass whose cache is dropped
    torch.testing.assert_close(lp, lp_ref, **FP32_LEVEL)
    torch.testing.assert_close(ent, ent_ref, **FP32_LEVEL)
    for name, grad in g_ref.items():
        torch.testing.assert_close(grads[name], grad, **FP32_LEVEL, msg=name)


def test_a_no_grad_pass_in_training_mode_with_checkpointing_shares_the_prompt_pass():
    """The trainer's `logp_old`: policy in train mode, gradient checkpointing on, no grad.
    transformers before 5.2x (5.17 on the GPU image) drops the trunk's cache whenever the
    flag is on in training mode, grad or not; emulated here on the trunk. Scoring pauses the
    flag for a no-grad pass, so the prompt pass is shared and none is run to be discarded."""
    model = build_tiny_model(TOK, arch="qwen3", seed=2, dtype=torch.float64)
    prompts, ids, mask = _rows(seed=4)
    model.eval()
    expected = score_responses(model, prompts, ids, mask, 0.9)
    model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
    model.train()
    trunk = model.base_model
    forward, calls = trunk.forward, []

    def forward_of_transformers_5_17(*args, **kwargs):  # its `merge_with_config_defaults`
        if trunk.gradient_checkpointing and trunk.training and kwargs.get("use_cache"):
            kwargs = {**kwargs, "use_cache": False}
        out = forward(*args, **kwargs)
        calls.append((bool(kwargs.get("use_cache")), getattr(out, "cache", None) is not None
                      or getattr(out, "past_key_values", None) is not None))
        return out

    trunk.forward = forward_of_transformers_5_17
    try:
        got = score_responses(model, prompts, ids, mask, 0.9)
    finally:
        del trunk.forward
    assert calls == [(True, True), (True, True)]  # the prompt pass, then the responses
    assert trunk.gradient_checkpointing and all(x.gradient_checkpointing for x in trunk.layers)
    for a, b in zip(got, expected, strict=True):
        torch.testing.assert_close(a, b, **FP32_LEVEL)
