"""Rollout correction (truncated importance sampling): a loop reference, properties, and its
place in the loss (the pg term only, scaled by a constant weight)."""

from __future__ import annotations

import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from mgrpo.core.correction import SAFETY_BOUND, rollout_correction_weights
from mgrpo.core.losses import policy_loss


def _reference(old, sampler, mask, level, cap):
    """One row and one token at a time, the formulas as written (verl's TIS)."""
    out = [[0.0] * len(old[0]) for _ in old]
    for r in range(len(old)):
        if level == "sequence":
            d = sum(old[r][t] - sampler[r][t] for t in range(len(old[r])) if mask[r][t])
            w = min(math.exp(max(-SAFETY_BOUND, min(SAFETY_BOUND, d))), cap)
        for t in range(len(old[r])):
            if not mask[r][t]:
                continue
            if level == "token":
                d = old[r][t] - sampler[r][t]
                w = min(math.exp(max(-SAFETY_BOUND, min(SAFETY_BOUND, d))), cap)
            out[r][t] = w
    return out


@settings(max_examples=60, deadline=None)
@given(st.integers(1, 4), st.integers(1, 6), st.sampled_from(["token", "sequence"]),
       st.floats(1.0, 5.0), st.integers(0, 10_000))
def test_matches_the_loop_reference(rows, width, level, cap, seed):
    g = torch.Generator().manual_seed(seed)
    old = -torch.rand(rows, width, generator=g, dtype=torch.float64) * 3
    sampler = old + torch.randn(rows, width, generator=g, dtype=torch.float64) * 0.7
    mask = torch.rand(rows, width, generator=g) > 0.3
    got = rollout_correction_weights(old, sampler, mask, level, cap)
    ref = torch.tensor(_reference(old.tolist(), sampler.tolist(), mask.tolist(), level, cap),
                       dtype=torch.float64)
    torch.testing.assert_close(got, ref, rtol=1e-12, atol=0)
    assert (got <= cap).all() and (got[~mask] == 0).all() and (got[mask] > 0).all()


def test_equal_logprobs_give_weight_one_and_huge_gaps_stay_finite():
    old = torch.tensor([[-1.0, -2.0, -0.5]])
    mask = torch.ones_like(old, dtype=torch.bool)
    for level in ("token", "sequence"):
        assert torch.equal(rollout_correction_weights(old, old, mask, level, 2.0),
                           torch.ones_like(old))
    far = rollout_correction_weights(old, old - 1e4, mask, "sequence", 2.0)
    assert torch.equal(far, torch.full_like(old, 2.0))  # truncated, not inf
    low = rollout_correction_weights(old, old + 1e4, mask, "token", 2.0)
    assert torch.isfinite(low).all() and (low > 0).all()


def test_bad_level_or_cap_is_refused():
    x = torch.zeros(1, 2)
    with pytest.raises(ValueError, match="token, sequence"):
        rollout_correction_weights(x, x, x.bool(), "tokens", 2.0)
    with pytest.raises(ValueError, match=">= 1"):
        rollout_correction_weights(x, x, x.bool(), "token", 0.5)


def test_the_weight_scales_the_policy_gradient_term_only():
    logp = torch.tensor([[-1.0, -0.7], [-2.0, -0.1]], requires_grad=True)
    ref = torch.tensor([[-1.2, -0.5], [-1.5, -0.3]])
    adv = torch.tensor([1.0, -0.5])
    mask = torch.ones(2, 2, dtype=torch.bool)
    w = torch.tensor([[0.5, 2.0], [1.5, 1.0]])
    plain, s0 = policy_loss(logp, logp.detach(), ref, adv, mask, kl_coef=0.0)
    weighted, s1 = policy_loss(logp, logp.detach(), ref, adv, mask, kl_coef=0.0, is_weights=w)
    (g0,) = torch.autograd.grad(plain, logp)
    (g1,) = torch.autograd.grad(weighted, logp)
    torch.testing.assert_close(g1, g0 * w)  # d(w pg)/d logp = w d pg / d logp, w constant
    with_kl, _ = policy_loss(logp, logp.detach(), ref, adv, mask, kl_coef=0.1, is_weights=w)
    kl_only = policy_loss(logp, logp.detach(), ref, adv, mask, kl_coef=0.1)[1]["kl"]
    torch.testing.assert_close(with_kl, weighted + 0.1 * kl_only)  # the KL is not reweighted
