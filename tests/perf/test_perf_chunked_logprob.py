"""The chunked training log-prob path (`score_responses(with_grad=True)` ->
`ChunkedTokenLogProb`) against the naive `log_softmax(logits.float() / T)` path: same
log-probs, same entropies, same gradients for every parameter (trunk and LM head), with
chunks smaller than the token count, padding, and T != 1. Correctness only, no timings."""

from __future__ import annotations

import pytest
import torch
from transformers import Qwen2Config, Qwen2ForCausalLM

from mgrpo.rollout import score_responses

VOCAB = 97
PROMPT = 5
TOKENS = 7


def _model() -> Qwen2ForCausalLM:
    torch.manual_seed(0)
    config = Qwen2Config(
        vocab_size=VOCAB, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
        num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=64,
        tie_word_embeddings=False,
    )
    return Qwen2ForCausalLM(config).double().float()


def _inputs():
    gen = torch.Generator().manual_seed(1)
    prompts = torch.randint(4, VOCAB, (3, PROMPT), generator=gen)
    response = torch.randint(4, VOCAB, (3, TOKENS), generator=gen)  # (R, T)
    mask = torch.ones(3, TOKENS, dtype=torch.bool)
    mask[1, 4:] = False  # right padding
    mask[2, 6:] = False
    return prompts, response, mask


def _naive(model, prompts, response, mask, temperature):
    ids = torch.cat([prompts, response.masked_fill(~mask, 0)], dim=1)  # (R, P+T)
    logits = model(input_ids=ids).logits[:, PROMPT - 1 : -1]  # (R, T, V)
    logp_all = torch.log_softmax(logits.float() / temperature, dim=-1)
    logp = logp_all.gather(-1, response[..., None])[..., 0] * mask  # (R, T)
    ent = -(logp_all.exp() * logp_all).sum(-1) * mask
    return logp, ent


def _loss(logp, mask):
    weights = torch.linspace(-1.0, 2.0, mask.shape[1])  # non-uniform upstream gradient
    return (logp * mask * weights).sum() / mask.sum()


def _grads(model):
    return {n: p.grad.detach().clone() for n, p in model.named_parameters() if p.grad is not None}


@pytest.mark.parametrize("temperature,chunk", [(1.0, 4), (0.7, 3), (1.3, 1024)])
def test_chunked_logprob_matches_naive_values_and_gradients(temperature, chunk):
    prompts, response, mask = _inputs()
    model = _model()
    logp_n, ent_n = _naive(model, prompts, response, mask, temperature)
    _loss(logp_n, mask).backward()
    grads_naive = _grads(model)
    model.zero_grad(set_to_none=True)

    logp_c, ent_c = score_responses(
        model, prompts.tolist(), response, mask, temperature, with_grad=True, chunk_tokens=chunk
    )
    _loss(logp_c, mask).backward()
    grads_chunked = _grads(model)

    torch.testing.assert_close(logp_c, logp_n.detach(), rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(ent_c, ent_n.detach(), rtol=1e-5, atol=1e-5)
    assert not ent_c.requires_grad
    assert set(grads_chunked) == set(grads_naive)
    assert "lm_head.weight" in grads_chunked and "model.embed_tokens.weight" in grads_chunked
    for name, g in grads_naive.items():
        assert g.abs().sum() > 0, name
        torch.testing.assert_close(grads_chunked[name], g, rtol=1e-4, atol=1e-6, msg=name)


def test_padding_positions_get_zero_logp_and_no_gradient_from_pad_ids():
    prompts, response, mask = _inputs()
    model = _model()
    logp, ent = score_responses(model, prompts.tolist(), response, mask, 1.0, with_grad=True,
                                chunk_tokens=2)
    assert torch.all(logp[~mask] == 0) and torch.all(ent[~mask] == 0)
    # changing a padded response id must not change anything (it never reaches the model)
    other = response.clone()
    other[1, 5] = (other[1, 5] + 1) % VOCAB
    logp2, _ = score_responses(model, prompts.tolist(), other, mask, 1.0, with_grad=False,
                               chunk_tokens=2)
    torch.testing.assert_close(logp2, logp.detach())
