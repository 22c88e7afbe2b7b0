"""Sampling distribution: seeded chi-square tests against softmax(logits / T), top-k/top-p."""

from __future__ import annotations

import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from mgrpo.models.tiny import build_tiny_model
from mgrpo.models.tokenizer import build_char_tokenizer
from mgrpo.rollout import SamplingParams, make_engine
from mgrpo.rollout.sampling import inverse_cdf, sample_tokens

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


def _reference_inverse_cdf(probs: torch.Tensor, u: torch.Tensor) -> torch.Tensor:
    """One fp64 scan over the whole vocabulary: the first i with C_i > u C_V."""
    cdf = probs.double().cumsum(-1)
    total = cdf[:, -1:]
    target = torch.minimum(u * total, torch.nextafter(total, torch.zeros_like(total)))
    return torch.searchsorted(cdf, target, right=True)[:, 0]


@settings(max_examples=60, deadline=None)
@given(
    vocab=st.sampled_from([1, 5, 31, 32, 33, 100, 257]),
    block=st.sampled_from([4, 32]),
    rows=st.integers(1, 4),
    zero_frac=st.floats(0.0, 0.99),
    seed=st.integers(0, 2**31 - 1),
)
def test_two_level_inverse_cdf_matches_one_full_scan(vocab, block, rows, zero_frac, seed):
    """Dyadic probabilities (multiples of 2^-12, small sums) make every partial sum exact in
    fp32 and fp64, so the two-level walk must pick exactly the full scan's token, at any U,
    including the edges, whole masked blocks and vocabularies not a multiple of the block."""
    gen = torch.Generator().manual_seed(seed)
    weights = torch.randint(0, 8, (rows, vocab), generator=gen).double()
    weights[torch.rand(rows, vocab, generator=gen) < zero_frac] = 0.0
    weights[torch.arange(rows), torch.randint(0, vocab, (rows,), generator=gen)] = 1.0
    probs = (weights / 4096).float()  # (rows, V), not normalised on purpose
    u = torch.rand(rows, 1, generator=gen, dtype=torch.float64)
    u[0, 0] = [0.0, 1.0 - 2.0**-53, u[0, 0].item()][seed % 3]
    tok = inverse_cdf(probs, u, block_size=block, one_scan_max=0)  # always two levels
    assert torch.equal(tok, _reference_inverse_cdf(probs, u))
    assert torch.equal(inverse_cdf(probs, u), tok)  # the one-scan path of small vocabularies
    assert bool((probs.gather(1, tok[:, None]) > 0).all())


def test_two_level_inverse_cdf_frequencies_match_probabilities():
    """Many draws over a 600-entry vocabulary (blocks of 256, the last partial) follow p."""
    gen = torch.Generator().manual_seed(3)
    probs = torch.softmax(torch.randn(600, generator=gen) * 2, -1)
    probs[256:512] = 0.0  # one whole block masked
    counts = torch.zeros(600, dtype=torch.long)
    for _ in range(20):  # 20 x 5,000 draws
        u = torch.rand(5000, 1, generator=gen, dtype=torch.float64)
        tok = inverse_cdf(probs.expand(5000, -1), u, block_size=256, one_scan_max=0)
        counts += torch.bincount(tok, minlength=600)
    assert int(counts[256:512].sum()) == 0
    kept = probs > 0
    assert chi_square_pvalue(counts[kept], probs[kept] / probs[kept].sum()) > ALPHA
