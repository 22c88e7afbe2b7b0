"""policy_loss's TRL / verl options against loop references: the GSPO sequence-level ratio
(TRL's form: s(theta) broadcast over the sequence, gradient through the mean), CISPO
(-sg[clip(r)] A logp) and top-entropy token masking; and `core.entropy`'s top-entropy mask
against TRL's `get_high_entropy_mask` written as a loop over torch.quantile."""

from __future__ import annotations

import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from mgrpo.core.entropy import top_entropy_mask, top_entropy_threshold
from mgrpo.core.losses import POLICY_LOSSES, RATIO_LEVELS, policy_loss, sequence_log_ratio

FAST = settings(deadline=None, max_examples=40, derandomize=True)
AGGS = ("token-mean", "seq-mean-token-mean", "seq-mean-token-sum-norm")
CLOSE = {"rtol": 1e-9, "atol": 1e-12}


def _inputs(seed: int, rows: int, cols: int, spread: float = 0.5):
    g = torch.Generator().manual_seed(seed)
    logp_old = -torch.rand(rows, cols, generator=g, dtype=torch.float64) * 3
    logp = logp_old + torch.randn(rows, cols, generator=g, dtype=torch.float64) * spread
    adv = torch.randn(rows, generator=g, dtype=torch.float64)
    mask = torch.rand(rows, cols, generator=g) < 0.7
    entropy = torch.rand(rows, cols, generator=g, dtype=torch.float64) * 2
    return logp.requires_grad_(True), logp_old, adv, mask, entropy


def _aggregate(per_row: list[tuple[int, object]], agg: str, cols: int):
    """Aggregate rows given as (n_tokens, sum of the row's token values) like the module."""
    live = [(n, total) for n, total in per_row if n > 0]
    if not live:
        return None
    if agg == "token-mean":
        return sum(total for _, total in live) / sum(n for n, _ in live)
    if agg == "seq-mean-token-mean":
        return sum(total / n for n, total in live) / len(live)
    return sum(total / cols for _, total in live) / len(live)


def _gspo_reference(logp, logp_old, adv, mask, low, high, agg):
    """TRL's sequence level, one rollout at a time: s = exp(mean_t (logp - logp_old)) with its
    gradient through every token, each token's value -min(s A, clip(s) A)."""
    per_row = []
    for r in range(logp.shape[0]):
        tokens = [t for t in range(logp.shape[1]) if mask[r, t]]
        if not tokens:
            per_row.append((0, None))
            continue
        s = torch.exp(sum(logp[r, t] - logp_old[r, t] for t in tokens) / len(tokens))
        a = float(adv[r])
        value = -torch.minimum(s * a, torch.clamp(s, 1 - low, 1 + high) * a)
        per_row.append((len(tokens), value * len(tokens)))
    return _aggregate(per_row, agg, logp.shape[1])


def _cispo_reference(logp, logp_old, adv, mask, low, high, agg, sequence=False):
    """MiniMax-M1's token term -sg[clip(r, 1 - low, 1 + high)] A logp, one token at a time."""
    per_row = []
    for r in range(logp.shape[0]):
        tokens = [t for t in range(logp.shape[1]) if mask[r, t]]
        if not tokens:
            per_row.append((0, None))
            continue
        seq = sum(float((logp[r, t] - logp_old[r, t]).detach()) for t in tokens) / len(tokens)
        total = 0
        for t in tokens:
            ratio = math.exp(seq if sequence else float((logp[r, t] - logp_old[r, t]).detach()))
            weight = min(max(ratio, 1 - low), 1 + high)  # a python float: no gradient
            total = total - weight * float(adv[r]) * logp[r, t]
        per_row.append((len(tokens), total))
    return _aggregate(per_row, agg, logp.shape[1])


def _check(loss, expected, logp):
    if expected is None:
        assert float(loss.detach()) == 0.0
        return
    torch.testing.assert_close(loss, expected.reshape(()), **CLOSE)
    got = torch.autograd.grad(loss, logp, retain_graph=True)[0]
    want = torch.autograd.grad(expected, logp)[0]
    torch.testing.assert_close(got, want, **CLOSE)


def test_registries_and_levels():
    assert sorted(POLICY_LOSSES.names()) == ["cispo", "ppo"]
    assert RATIO_LEVELS == ("token", "sequence")
    logp, old, adv, mask, _ = _inputs(0, 2, 3)
    with pytest.raises(ValueError, match="ratio level"):
        policy_loss(logp, old, None, adv, mask, ratio_level="segment")
    with pytest.raises(ValueError, match="policy loss"):
        policy_loss(logp, old, None, adv, mask, loss_mode="grpo")


@FAST
@given(seed=st.integers(0, 2**31 - 1), rows=st.integers(1, 4), cols=st.integers(1, 6),
       low=st.sampled_from([3e-4, 0.1, 0.2]), high=st.sampled_from([4e-4, 0.2, 0.28]),
       agg=st.sampled_from(AGGS))
def test_gspo_matches_trl_sequence_level(seed, rows, cols, low, high, agg):
    """verl's GSPO-token form (value s, d/dlogp_t = s) has the value and the gradient of TRL's
    broadcast s(theta) under every aggregation (each weights a sequence's tokens equally)."""
    logp, old, adv, mask, _ = _inputs(seed, rows, cols)
    loss, metrics = policy_loss(logp, old, None, adv, mask, kl_coef=0.0, clip_low=low,
                                clip_high=high, agg=agg, ratio_level="sequence")
    _check(loss, _gspo_reference(logp, old, adv, mask, low, high, agg), logp)
    # every token of a rollout carries its sequence's ratio, clipped or not as a whole
    s = sequence_log_ratio((logp - old).detach(), mask).exp()
    counts = mask.sum(1)
    if counts.sum():
        assert metrics["ratio_mean"] == pytest.approx(float((s * counts).sum() / counts.sum()))
        a = adv
        clipped = ((-a * s.clamp(1 - low, 1 + high)) > (-a * s)) & (counts > 0)
        assert metrics["clip_fraction"] == pytest.approx(
            float((clipped * counts).sum() / counts.sum()))


def test_gspo_at_unchanged_weights_is_the_token_loss():
    """logp == logp_old: every ratio is 1, both levels give the same loss and gradient."""
    logp, _, adv, mask, _ = _inputs(3, 4, 5)
    old = logp.detach().clone()
    token, _ = policy_loss(logp, old, None, adv, mask, kl_coef=0.0)
    seq, m = policy_loss(logp, old, None, adv, mask, kl_coef=0.0, ratio_level="sequence")
    torch.testing.assert_close(seq, token, **CLOSE)
    torch.testing.assert_close(torch.autograd.grad(seq, logp, retain_graph=True)[0],
                               torch.autograd.grad(token, logp)[0], **CLOSE)
    assert m["ratio_min"] == m["ratio_max"] == 1.0 and m["clip_fraction"] == 0.0


@FAST
@given(seed=st.integers(0, 2**31 - 1), rows=st.integers(1, 4), cols=st.integers(1, 6),
       low=st.sampled_from([0.2, 1.0]), high=st.sampled_from([0.28, 4.0]),
       agg=st.sampled_from(AGGS), sequence=st.booleans())
def test_cispo_matches_loop_reference(seed, rows, cols, low, high, agg, sequence):
    logp, old, adv, mask, _ = _inputs(seed, rows, cols, spread=1.0)
    loss, metrics = policy_loss(logp, old, None, adv, mask, kl_coef=0.0, clip_low=low,
                                clip_high=high, agg=agg, loss_mode="cispo",
                                ratio_level="sequence" if sequence else "token")
    _check(loss, _cispo_reference(logp, old, adv, mask, low, high, agg, sequence), logp)
    if not sequence and mask.any():  # the share of tokens whose weight was truncated
        ratio = (logp - old).detach().exp()[mask]
        truncated = (ratio < 1 - low) | (ratio > 1 + high)
        assert metrics["clip_fraction"] == pytest.approx(float(truncated.double().mean()))


def test_cispo_keeps_the_gradient_of_tokens_ppo_clips():
    """A token far outside the clip range: PPO's gradient is 0, CISPO's is -clip(r) A / N."""
    old = torch.tensor([[-1.0, -1.0]], dtype=torch.float64)
    logp = torch.tensor([[-1.0 + math.log(2.0), -1.0]], dtype=torch.float64, requires_grad=True)
    adv = torch.tensor([1.0], dtype=torch.float64)
    mask = torch.ones(1, 2, dtype=torch.bool)
    ppo, _ = policy_loss(logp, old, None, adv, mask, kl_coef=0.0)
    cispo, m = policy_loss(logp, old, None, adv, mask, kl_coef=0.0, loss_mode="cispo")
    g_ppo = torch.autograd.grad(ppo, logp)[0]
    g_cispo = torch.autograd.grad(cispo, logp)[0]
    assert g_ppo[0, 0] == 0.0 and g_ppo[0, 1] == pytest.approx(-0.5)
    assert g_cispo[0, 0] == pytest.approx(-1.2 / 2) and g_cispo[0, 1] == pytest.approx(-0.5)
    assert m["clip_fraction"] == 0.5


def _masked_reference(logp, logp_old, logp_ref, adv, mask, keep, entropy, coef, beta):
    """token-mean over every loss token: e (pg - c H) + beta k3, e = keep (no gradient)."""
    values = []
    for r in range(logp.shape[0]):
        for t in range(logp.shape[1]):
            if not mask[r, t]:
                continue
            ratio = torch.exp(logp[r, t] - logp_old[r, t])
            a = float(adv[r])
            pg = -torch.minimum(ratio * a, torch.clamp(ratio, 0.8, 1.2) * a)
            d = logp_ref[r, t] - logp[r, t]
            kl = torch.exp(d) - d - 1
            e = 1.0 if keep[r, t] else 0.0
            values.append(e * (pg - coef * entropy[r, t]) + beta * kl)
    return sum(values) / len(values) if values else None


@FAST
@given(seed=st.integers(0, 2**31 - 1), rows=st.integers(1, 4), cols=st.integers(1, 6),
       share=st.sampled_from([0.2, 0.5, 1.0]), coef=st.sampled_from([0.0, 0.05]))
def test_token_mask_reaches_pg_and_bonus_not_kl_or_normaliser(seed, rows, cols, share, coef):
    logp, old, adv, mask, entropy = _inputs(seed, rows, cols)
    ref = old - 0.1
    entropy.requires_grad_(True)
    keep = top_entropy_mask(entropy.detach(), mask, share)
    loss, metrics = policy_loss(logp, old, ref, adv, mask, kl_coef=0.05, entropy=entropy,
                                entropy_coef=coef, token_mask=keep)
    expected = _masked_reference(logp, old, ref, adv, mask, keep, entropy, coef, 0.05)
    if expected is None:
        assert float(loss.detach()) == 0.0
        return
    torch.testing.assert_close(loss, expected.reshape(()), **CLOSE)
    got = torch.autograd.grad(loss, logp, retain_graph=True)[0]
    torch.testing.assert_close(got, torch.autograd.grad(expected, logp)[0], **CLOSE)
    assert metrics["token_mask_tokens"] == float((keep & mask).sum())
    assert metrics["num_tokens"] == float(mask.sum())  # the normaliser keeps every token


# ---------------------------------------------------------------- the top-entropy mask

def _trl_mask(entropy, mask, share):
    """TRL's get_high_entropy_mask (one process), written out token by token."""
    valid = [float(entropy[r, t]) for r in range(mask.shape[0]) for t in range(mask.shape[1])
             if mask[r, t]]
    out = torch.zeros(mask.shape, dtype=torch.bool)
    if not valid:
        return out
    tau = torch.quantile(torch.tensor(valid, dtype=torch.float64), 1 - share).item()
    for r in range(mask.shape[0]):
        for t in range(mask.shape[1]):
            out[r, t] = bool(mask[r, t]) and float(entropy[r, t]) >= tau
    return out


@FAST
@given(seed=st.integers(0, 2**31 - 1), rows=st.integers(1, 5), cols=st.integers(1, 8),
       share=st.floats(0.01, 1.0), ties=st.booleans())
def test_top_entropy_mask_matches_trl(seed, rows, cols, share, ties):
    g = torch.Generator().manual_seed(seed)
    entropy = torch.rand(rows, cols, generator=g, dtype=torch.float64) * 3
    if ties:  # repeated values: ties at the threshold are all kept
        entropy = (entropy * 2).round() / 2
    mask = torch.rand(rows, cols, generator=g) < 0.6
    got = top_entropy_mask(entropy, mask, share)
    assert torch.equal(got, _trl_mask(entropy, mask, share))
    assert not (got & ~mask).any()
    if share == 1.0:
        assert torch.equal(got, mask)


@FAST
@given(values=st.lists(st.floats(0.0, 10.0), min_size=1, max_size=60),
       share=st.floats(0.01, 1.0))
def test_threshold_is_torch_quantile(values, share):
    v = torch.tensor(values, dtype=torch.float64)
    expected = torch.quantile(v, 1 - share).item()
    assert top_entropy_threshold(v, share) == pytest.approx(expected, rel=1e-12, abs=1e-12)


def test_threshold_beyond_torch_quantile_size_limit():
    """torch.quantile refuses more than 2^24 values; an update's tokens can pass that."""
    n = 2**24 + 1
    v = torch.arange(n, dtype=torch.float32)
    assert top_entropy_threshold(v, 0.25) == pytest.approx(0.75 * (n - 1))


def test_mask_monotone_in_share_and_empty_cases():
    g = torch.Generator().manual_seed(1)
    entropy = torch.rand(6, 9, generator=g)
    mask = torch.rand(6, 9, generator=g) < 0.5
    kept = [int(top_entropy_mask(entropy, mask, s).sum()) for s in (0.1, 0.2, 0.5, 0.9, 1.0)]
    assert kept == sorted(kept) and kept[-1] == int(mask.sum())
    assert not top_entropy_mask(entropy, torch.zeros_like(mask), 0.2).any()
    assert top_entropy_threshold(torch.zeros(0), 0.2) is None
    with pytest.raises(ValueError, match="share"):
        top_entropy_threshold(torch.ones(3), 0.0)
