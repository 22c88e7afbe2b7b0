"""policy_loss: loop reference (3 aggregations, with/without KL), clip, KL skip, accumulation."""

from __future__ import annotations

import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from mgrpo.core.losses import LOSS_AGGREGATIONS, get_loss_aggregation, policy_loss

FAST = settings(deadline=None, max_examples=50, derandomize=True)
# parametrized tests run once per estimator/aggregation: fewer examples each, same total order
PER_CASE = settings(deadline=None, max_examples=25, derandomize=True)
AGGS = sorted(LOSS_AGGREGATIONS)


def _reference_loss(logp, logp_old, logp_ref, adv, mask, clip, kl_coef, agg):
    """Per-token loops with scalar torch ops (autograd-able), docs/design.md §3 read literally."""
    rows, cols = logp.shape
    use_kl = logp_ref is not None and kl_coef != 0
    seq_values = []  # per sequence in the loss set: its aggregated value
    token_values = []
    clipped = 0
    for r in range(rows):
        seq_tokens = []
        for t in range(cols):
            if not mask[r][t]:
                continue
            ratio = torch.exp(logp[r, t] - logp_old[r, t])
            a = float(adv[r])
            unclipped = ratio * a
            clipped_term = torch.clamp(ratio, 1 - clip, 1 + clip) * a
            pg = -torch.minimum(unclipped, clipped_term)
            if float(clipped_term.detach()) < float(unclipped.detach()):
                clipped += 1
            value = pg
            if use_kl:
                d = logp_ref[r, t] - logp[r, t]
                value = value + kl_coef * (torch.exp(d) - d - 1)
            seq_tokens.append(value)
            token_values.append(value)
        if seq_tokens:
            total = sum(seq_tokens)
            seq_values.append(
                total / len(seq_tokens) if agg == "seq-mean-token-mean" else total / cols
            )
    if agg == "token-mean":
        loss = sum(token_values) / len(token_values) if token_values else None
    else:
        loss = sum(seq_values) / len(seq_values) if seq_values else None
    clip_fraction = clipped / len(token_values) if token_values else 0.0
    return loss, clip_fraction


def _random_inputs(seed: int, rows: int, cols: int, spread: float, density: float):
    g = torch.Generator().manual_seed(seed)
    logp_old = -torch.rand(rows, cols, generator=g, dtype=torch.float64) * 3  # (R, T)
    logp = logp_old + torch.randn(rows, cols, generator=g, dtype=torch.float64) * spread
    logp_ref = logp_old + torch.randn(rows, cols, generator=g, dtype=torch.float64) * spread
    adv = torch.randn(rows, generator=g, dtype=torch.float64)  # (R,)
    mask = torch.rand(rows, cols, generator=g) < density  # (R, T)
    return logp.requires_grad_(True), logp_old, logp_ref, adv, mask


@pytest.mark.parametrize("agg", AGGS)
@pytest.mark.parametrize("with_kl", [False, True], ids=["no_kl", "kl"])
@PER_CASE
@given(
    seed=st.integers(0, 2**31 - 1),
    rows=st.integers(1, 4),
    cols=st.integers(1, 6),
    spread=st.sampled_from([0.0, 0.1, 0.5]),
    density=st.sampled_from([0.0, 0.5, 1.0]),
    clip=st.sampled_from([0.0, 0.2, 0.5]),
)
def test_matches_loop_reference(
    agg: str,
    with_kl: bool,
    seed: int,
    rows: int,
    cols: int,
    spread: float,
    density: float,
    clip: float,
) -> None:
    logp, logp_old, logp_ref, adv, mask = _random_inputs(seed, rows, cols, spread, density)
    kl_coef = 0.1 if with_kl else 0.0
    ref = logp_ref if with_kl else None
    loss, metrics = policy_loss(logp, logp_old, ref, adv, mask, clip, kl_coef, agg)
    (grad,) = torch.autograd.grad(loss, logp)

    expected, clip_fraction = _reference_loss(
        logp, logp_old, ref, adv, mask.tolist(), clip, kl_coef, agg
    )
    assert math.isfinite(float(loss.detach()))
    if expected is None:  # no loss token at all
        assert float(loss.detach()) == 0.0 and torch.equal(grad, torch.zeros_like(grad))
    else:
        (expected_grad,) = torch.autograd.grad(expected, logp)
        torch.testing.assert_close(loss, expected.reshape(()), rtol=1e-9, atol=1e-12)
        torch.testing.assert_close(grad, expected_grad, rtol=1e-9, atol=1e-12)
    assert metrics["clip_fraction"] == pytest.approx(clip_fraction)
    assert float(loss.detach()) == pytest.approx(
        metrics["pg_loss"] + kl_coef * metrics["kl"], abs=1e-9
    )
    assert metrics["num_tokens"] == float(mask.sum())
    if not with_kl:
        assert metrics["kl"] == 0.0


@pytest.mark.parametrize("agg", AGGS)
@PER_CASE
@given(
    seed=st.integers(0, 2**31 - 1), n_micro=st.integers(1, 4), density=st.sampled_from([0.3, 1.0])
)
def test_gradient_accumulation_matches_one_batch(
    agg: str, seed: int, n_micro: int, density: float
) -> None:
    logp, logp_old, logp_ref, adv, mask = _random_inputs(seed, 8, 5, 0.3, density)
    full, _ = policy_loss(logp, logp_old, logp_ref, adv, mask, agg=agg)
    (full_grad,) = torch.autograd.grad(full, logp)
    totals = {
        "num_tokens_global": float(mask.sum()),
        "num_seqs_global": float(mask.any(dim=1).sum()),
        "norm_length": mask.shape[1],
    }
    accumulated = torch.zeros((), dtype=torch.float64)
    for idx in torch.arange(8).chunk(n_micro):
        cols = mask[idx].any(dim=0).nonzero().max().item() + 1 if mask[idx].any() else 1
        micro = [x[idx][:, :cols] for x in (logp, logp_old, logp_ref)]  # trimmed padding
        part, _ = policy_loss(
            micro[0], micro[1], micro[2], adv[idx], mask[idx][:, :cols], agg=agg, **totals
        )
        accumulated = accumulated + part
    (acc_grad,) = torch.autograd.grad(accumulated, logp)
    torch.testing.assert_close(accumulated, full, rtol=1e-9, atol=1e-12)
    torch.testing.assert_close(acc_grad, full_grad, rtol=1e-9, atol=1e-12)


@pytest.mark.parametrize("agg", AGGS)
def test_ratio_one_gives_minus_advantage_per_token(agg: str) -> None:
    logp = torch.tensor([[-1.0, -2.0, -0.5], [-0.3, -0.7, 0.0]], requires_grad=True)
    adv = torch.tensor([0.8, -1.5])
    mask = torch.tensor([[True, True, True], [True, True, False]])
    loss, metrics = policy_loss(logp, logp.detach(), None, adv, mask, kl_coef=0.0, agg=agg)
    loss.backward()
    if agg == "token-mean":
        expected = -(0.8 * 3 - 1.5 * 2) / 5
        expected_grad = torch.tensor([[-0.8, -0.8, -0.8], [1.5, 1.5, 0.0]]) / 5
    elif agg == "seq-mean-token-mean":
        expected = -(0.8 - 1.5) / 2
        expected_grad = torch.tensor([[-0.8 / 3] * 3, [1.5 / 2, 1.5 / 2, 0.0]]) / 2
    else:
        expected = -(0.8 * 3 / 3 - 1.5 * 2 / 3) / 2
        expected_grad = torch.tensor([[-0.8, -0.8, -0.8], [1.5, 1.5, 0.0]]) / 3 / 2
    assert float(loss.detach()) == pytest.approx(expected)
    torch.testing.assert_close(logp.grad, expected_grad)
    assert metrics["clip_fraction"] == 0.0 and metrics["ratio_mean"] == pytest.approx(1.0)


def test_clip_fraction_and_clipped_tokens_get_no_gradient() -> None:
    ratios = torch.tensor([[1.5, 0.5, 0.5, 1.5, 3.0]])  # last token is padding
    adv_per_token = [1.0, -1.0, 1.0, -1.0]
    # token 0: A>0, ratio > 1.2 -> clipped; token 1: A<0, ratio < 0.8 -> clipped;
    # token 2: A>0, ratio < 0.8 -> not clipped; token 3: A<0, ratio > 1.2 -> not clipped
    logp_old = torch.full((4, 5), -1.0)
    logp = (logp_old + ratios.log().expand(4, 5)).clone().requires_grad_(True)
    mask = torch.zeros(4, 5, dtype=torch.bool)
    for r in range(4):
        mask[r, r] = True  # rollout r has one loss token, at position r
    mask[0, 4] = False
    adv = torch.tensor(adv_per_token)
    loss, metrics = policy_loss(logp, logp_old, None, adv, mask, clip=0.2, kl_coef=0.0)
    loss.backward()
    assert metrics["clip_fraction"] == pytest.approx(0.5)
    grads = [float(logp.grad[r, r]) for r in range(4)]
    assert grads[0] == 0.0 and grads[1] == 0.0
    assert grads[2] == pytest.approx(-1.0 * 0.5 / 4) and grads[3] == pytest.approx(1.5 / 4)
    assert metrics["ratio_max"] == pytest.approx(1.5) and metrics["ratio_min"] == pytest.approx(0.5)


def test_k3_kl_known_value_and_skip() -> None:
    logp = torch.tensor([[-1.0, -2.0]], requires_grad=True)
    ref = torch.tensor([[-1.5, -1.0]])
    mask = torch.ones(1, 2, dtype=torch.bool)
    adv = torch.zeros(1)
    loss, metrics = policy_loss(logp, logp.detach(), ref, adv, mask, kl_coef=0.5)
    k3 = [math.exp(d) - d - 1 for d in (-0.5, 1.0)]
    assert metrics["kl"] == pytest.approx(sum(k3) / 2)
    assert float(loss.detach()) == pytest.approx(0.5 * sum(k3) / 2)
    # KL skipped entirely: even a NaN reference cannot reach the loss
    nan_ref = torch.full((1, 2), float("nan"))
    for kwargs in ({"logp_ref": None, "kl_coef": 0.5}, {"logp_ref": nan_ref, "kl_coef": 0.0}):
        loss, metrics = policy_loss(logp, logp.detach(), advantages=adv, mask=mask, **kwargs)
        assert float(loss.detach()) == 0.0 and metrics["kl"] == 0.0


@pytest.mark.parametrize("agg", AGGS)
def test_empty_mask_gives_zero_loss_with_grad_path(agg: str) -> None:
    logp = torch.randn(3, 4, requires_grad=True)
    mask = torch.zeros(3, 4, dtype=torch.bool)
    adv = torch.tensor([1.0, float("nan"), -1.0])  # rows outside the loss set may hold anything
    loss, metrics = policy_loss(logp, logp.detach() - 1, torch.randn(3, 4), adv, mask, agg=agg)
    assert float(loss.detach()) == 0.0 and loss.requires_grad
    loss.backward()
    assert torch.equal(logp.grad, torch.zeros(3, 4))
    assert metrics["pg_loss"] == 0.0 and metrics["clip_fraction"] == 0.0
    assert metrics["num_tokens"] == 0.0 and metrics["num_seqs"] == 0.0


@pytest.mark.parametrize("agg", AGGS)
def test_garbage_under_the_mask_never_leaks(agg: str) -> None:
    logp = torch.tensor([[-1.0, float("nan")], [-0.5, float("-inf")]], requires_grad=True)
    logp_old = torch.tensor([[-1.2, float("inf")], [-0.5, 5.0]])
    ref = torch.tensor([[-0.9, float("nan")], [-0.6, 1e30]])
    adv = torch.tensor([1.0, float("nan")])
    mask = torch.tensor([[True, False], [False, False]])
    loss, metrics = policy_loss(logp, logp_old, ref, adv, mask, agg=agg)
    loss.backward()
    assert math.isfinite(float(loss.detach())) and torch.isfinite(logp.grad).all()
    assert all(math.isfinite(v) for v in metrics.values())


def test_bf16_and_float_mask_inputs() -> None:
    logp = torch.tensor([[-1.0, -2.0]], dtype=torch.bfloat16, requires_grad=True)
    loss, _ = policy_loss(
        logp, logp.detach().float(), None, torch.ones(1), torch.tensor([[1.0, 0.0]])
    )
    assert loss.dtype == torch.float32
    loss.backward()
    assert logp.grad is not None and logp.grad.dtype == torch.bfloat16


def test_errors() -> None:
    logp = torch.zeros(2, 3)
    mask = torch.ones(2, 3, dtype=torch.bool)
    adv = torch.zeros(2)
    names = "seq-mean-token-mean, seq-mean-token-sum-norm, token-mean"
    with pytest.raises(ValueError, match=f"valid names: {names}"):
        policy_loss(logp, logp, None, adv, mask, agg="sum")
    with pytest.raises(ValueError, match="valid names"):
        get_loss_aggregation("mean")
    with pytest.raises(ValueError, match="advantages"):
        policy_loss(logp, logp, None, torch.zeros(3), mask)
    with pytest.raises(ValueError, match="logp_ref"):
        policy_loss(logp, logp, torch.zeros(2, 2), adv, mask)
    with pytest.raises(ValueError, match="same shape"):
        policy_loss(logp, logp, None, adv, mask[:, :2])
    with pytest.raises(ValueError, match="clip"):
        policy_loss(logp, logp, None, adv, mask, clip=-0.1)
    with pytest.raises(ValueError, match="kl_coef"):
        policy_loss(logp, logp, None, adv, mask, kl_coef=float("nan"))
    with pytest.raises(ValueError, match="num_tokens_global"):
        policy_loss(logp, logp, None, adv, mask, num_tokens_global=-1)
    with pytest.raises(ValueError, match="norm_length"):
        policy_loss(logp, logp, None, adv, mask, norm_length=0)
