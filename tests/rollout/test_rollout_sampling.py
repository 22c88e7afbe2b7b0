"""Sampling distribution: seeded chi-square tests against softmax(logits / T), top-k/top-p."""

from __future__ import annotations

import math

import pytest
import torch

from mgrpo.models.tiny import build_tiny_model
from mgrpo.models.tokenizer import build_char_tokenizer
from mgrpo.rollout import SamplingParams, make_engine
from mgrpo.rollout.fast_engine import sample_tokens

TOK = build_char_tokenizer()
MIN_EXPECTED = 5.0  # pool chi-square bins with fewer expected counts
ALPHA = 1e-3


def chi_square_pvalue(counts: torch.Tensor, probs: torch.Tensor) -> float:
    """Upper-tail p-value of Pearson's chi-square (Wilson-Hilferty normal approximation)."""
    total = counts.sum()
    expected = probs.double() * total
    order = torch.argsort(expected, descending=True)
    keep = expected[order] >= MIN_EXPECTED
    obs = torch.cat([counts[order][keep].double(), counts[order][~keep].double().sum()[None]])
    exp = torch.cat([expected[order][keep], expected[order][~keep].sum()[None]])
    if exp[-1] < MIN_EXPECTED:  # fold a tiny pooled tail into the last kept bin
        obs, exp = obs[:-1].clone(), exp[:-1].clone()
        obs[-1] += counts[order][~keep].sum()
        exp[-1] += expected[order][~keep].sum()
    stat = float(((obs - exp) ** 2 / exp).sum())
    dof = obs.numel() - 1
    z = ((stat / dof) ** (1 / 3) - (1 - 2 / (9 * dof))) / math.sqrt(2 / (9 * dof))
    return 0.5 * math.erfc(z / math.sqrt(2))


def _peaked_logits(v: int = 30) -> torch.Tensor:
    g = torch.Generator().manual_seed(0)
    return torch.randn(v, generator=g) * 2.0  # (V,)


@pytest.mark.parametrize("temperature", [0.6, 1.0, 1.5])
def test_sample_tokens_matches_tempered_softmax(temperature):
    logits = _peaked_logits()
    n = 20000
    gen = torch.Generator().manual_seed(1)
    params = SamplingParams(max_new_tokens=1, temperature=temperature)
    tok, logp, ent = sample_tokens(logits.expand(n, -1).clone(), params, gen)
    probs = torch.softmax(logits / temperature, -1)
    counts = torch.bincount(tok, minlength=logits.numel())
    assert chi_square_pvalue(counts, probs) > ALPHA
    torch.testing.assert_close(logp, probs.log()[tok])
    torch.testing.assert_close(ent[0], -(probs * probs.log()).sum())
    # a wrong temperature must be rejected by the same test (the test has power)
    wrong = torch.softmax(logits / (temperature * 1.3), -1)
    assert chi_square_pvalue(counts, wrong) < ALPHA


def test_sample_tokens_top_k_top_p():
    logits = _peaked_logits()
    n = 20000
    probs = torch.softmax(logits, -1)
    params = SamplingParams(max_new_tokens=1, top_k=5, seed=0)
    tok, logp, _ = sample_tokens(logits.expand(n, -1).clone(), params, torch.Generator())
    top5 = torch.topk(probs, 5).indices
    assert torch.isin(tok, top5).all()
    restricted = torch.zeros_like(probs)
    restricted[top5] = probs[top5] / probs[top5].sum()
    assert chi_square_pvalue(torch.bincount(tok, minlength=30)[top5], restricted[top5]) > ALPHA
    torch.testing.assert_close(logp, probs.log()[tok])  # reported under the FULL softmax
    sorted_p, order = probs.sort(descending=True)
    nucleus = order[: int((sorted_p.cumsum(0) < 0.7).sum()) + 1]  # smallest set with mass >= 0.7
    params = SamplingParams(max_new_tokens=1, top_p=0.7)
    tok, _, _ = sample_tokens(logits.expand(n, -1).clone(), params, torch.Generator())
    assert set(tok.unique().tolist()) == set(nucleus.tolist())


@pytest.mark.parametrize("engine", ["fast", "hf"])
def test_engine_first_token_distribution(engine):
    model = build_tiny_model(TOK, arch="llama", hidden_size=32, num_heads=2, num_kv_heads=1)
    with torch.no_grad():
        model.lm_head.weight.mul_(40.0)  # a peaked, non-uniform next-token distribution
    prompt = TOK.encode("7+8=")
    temperature, n = 0.9, 3000
    with torch.no_grad():
        logits = model(torch.tensor([prompt])).logits[0, -1].float()
    probs = torch.softmax(logits / temperature, -1)
    eng = make_engine(engine, model, pad_token_id=TOK.pad_token_id)
    params = SamplingParams(max_new_tokens=1, temperature=temperature, seed=7, stop_token_ids=())
    batch = eng.generate([prompt], n, params)
    counts = torch.bincount(batch.response_ids[:, 0], minlength=probs.numel())
    assert chi_square_pvalue(counts, probs) > ALPHA
    torch.testing.assert_close(batch.logprobs[:, 0], probs.log()[batch.response_ids[:, 0]])


def test_inverse_cdf_never_draws_a_masked_token_at_the_edges(monkeypatch):
    """U at its extremes (0 and the largest double below 1) still lands on allowed tokens:
    the first / last token with non-zero probability after top-k masking."""
    logits = torch.tensor([[0.0, 5.0, 4.0, -1.0, 3.0]] * 2)  # top_k=2 keeps tokens 1 and 2
    params = SamplingParams(max_new_tokens=1, temperature=1.0, top_k=2)
    for edge, expected in ((0.0, 1), (1.0 - 2.0**-53, 2)):
        def fixed(shape, *args, edge=edge, **kwargs):
            return torch.full(shape, edge, dtype=kwargs.get("dtype", torch.float32))

        monkeypatch.setattr(torch, "rand", fixed)
        tok, _, _ = sample_tokens(logits.clone(), params, torch.Generator())
        assert tok.tolist() == [expected, expected]
