"""policy_loss options: clip_low / clip_high (clip-higher) and the static entropy bonus,
against a per-token loop; the defaults are the symmetric, bonus-free loss bit for bit."""

from __future__ import annotations

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from mgrpo.core.losses import LOSS_AGGREGATIONS, policy_loss

FAST = settings(deadline=None, max_examples=40, derandomize=True)


def _inputs(seed: int, rows: int, cols: int):
    g = torch.Generator().manual_seed(seed)
    logp_old = -torch.rand(rows, cols, generator=g, dtype=torch.float64) * 3
    logp = (logp_old + torch.randn(rows, cols, generator=g, dtype=torch.float64) * 0.5)
    entropy = torch.rand(rows, cols, generator=g, dtype=torch.float64) * 2
    adv = torch.randn(rows, generator=g, dtype=torch.float64)
    mask = torch.rand(rows, cols, generator=g) < 0.7
    return logp.requires_grad_(True), logp_old, entropy.requires_grad_(True), adv, mask


def _reference(logp, logp_old, entropy, adv, mask, low, high, coef):
    """token-mean of -min(r A, clip(r, 1-low, 1+high) A) - coef * H, one token at a time."""
    values = []
    for r in range(logp.shape[0]):
        for t in range(logp.shape[1]):
            if not mask[r, t]:
                continue
            ratio = torch.exp(logp[r, t] - logp_old[r, t])
            a = float(adv[r])
            pg = -torch.minimum(ratio * a, torch.clamp(ratio, 1 - low, 1 + high) * a)
            values.append(pg - coef * entropy[r, t])
    return sum(values) / len(values) if values else None


@FAST
@given(seed=st.integers(0, 2**31 - 1), rows=st.integers(1, 4), cols=st.integers(1, 6),
       low=st.sampled_from([0.1, 0.2]), high=st.sampled_from([0.2, 0.28, 0.5]),
       coef=st.sampled_from([0.0, 0.01, 0.3]))
def test_matches_loop_reference(seed, rows, cols, low, high, coef) -> None:
    logp, logp_old, entropy, adv, mask = _inputs(seed, rows, cols)
    loss, metrics = policy_loss(logp, logp_old, None, adv, mask, kl_coef=0.0, clip_low=low,
                                clip_high=high, entropy=entropy, entropy_coef=coef)
    expected = _reference(logp, logp_old, entropy, adv, mask, low, high, coef)
    if expected is None:
        assert float(loss.detach()) == 0.0
        return
    torch.testing.assert_close(loss, expected.reshape(()), rtol=1e-9, atol=1e-12)
    got = torch.autograd.grad(loss, (logp, entropy), allow_unused=True)
    want = torch.autograd.grad(expected, (logp, entropy), allow_unused=True)
    torch.testing.assert_close(got[0], want[0], rtol=1e-9, atol=1e-12)
    if coef:
        torch.testing.assert_close(got[1], want[1], rtol=1e-9, atol=1e-12)
        assert metrics["entropy"] == pytest.approx(float(entropy[mask].mean()))
    else:
        assert got[1] is None  # the bonus off: the entropy is not even read
        assert metrics["entropy"] == 0.0


@pytest.mark.parametrize("agg", sorted(LOSS_AGGREGATIONS))
def test_defaults_are_bit_identical(agg: str) -> None:
    logp, logp_old, entropy, adv, mask = _inputs(3, 4, 7)
    logp_ref = logp_old + 0.1
    plain, m_plain = policy_loss(logp, logp_old, logp_ref, adv, mask, 0.2, 0.05, agg)
    same, m_same = policy_loss(logp, logp_old, logp_ref, adv, mask, 0.2, 0.05, agg,
                               clip_low=0.2, clip_high=0.2, entropy=entropy, entropy_coef=0.0)
    assert torch.equal(plain, same)
    assert {k: v for k, v in m_same.items() if k != "entropy"} == {
        k: v for k, v in m_plain.items() if k != "entropy"}


def test_clip_higher_lets_positive_advantages_rise_further() -> None:
    logp_old = torch.zeros(1, 2, dtype=torch.float64)
    logp = torch.log(torch.tensor([[1.25, 0.75]], dtype=torch.float64)).requires_grad_(True)
    adv = torch.tensor([1.0], dtype=torch.float64)
    mask = torch.ones(1, 2, dtype=torch.bool)
    _, sym = policy_loss(logp, logp_old, None, adv, mask, clip=0.2, kl_coef=0.0)
    _, hi = policy_loss(logp, logp_old, None, adv, mask, clip=0.2, kl_coef=0.0, clip_high=0.28)
    assert sym["clip_fraction"] == 0.5 and hi["clip_fraction"] == 0.0


@pytest.mark.parametrize(("kwargs", "match"), [({"clip_low": -0.1}, "clip_low"),
                                               ({"clip_high": float("nan")}, "clip_high"),
                                               ({"entropy_coef": -1.0}, "entropy_coef")])
def test_bad_options_raise(kwargs, match) -> None:
    logp, logp_old, _, adv, mask = _inputs(0, 2, 3)
    with pytest.raises(ValueError, match=match):
        policy_loss(logp, logp_old, None, adv, mask, **kwargs)


def test_entropy_shape_checked() -> None:
    logp, logp_old, _, adv, mask = _inputs(0, 2, 3)
    with pytest.raises(ValueError, match="entropy"):
        policy_loss(logp, logp_old, None, adv, mask, entropy=torch.zeros(2, 4), entropy_coef=0.1)


# ---------------------------------------------------------------- KL estimators

def _kl_reference(d: float, estimator: str) -> float:
    """One token's KL estimate of d = ref - logp, written out (verl's low_var_kl clamps)."""
    import math

    if estimator == "low_var_kl":
        d = min(max(d, -20.0), 20.0)
        return min(max(math.exp(d) - d - 1.0, -10.0), 10.0)
    return math.exp(d) - d - 1.0


@FAST
@given(seed=st.integers(0, 10_000), scale=st.sampled_from([0.1, 3.0, 30.0]),
       estimator=st.sampled_from(["k3", "low_var_kl"]))
def test_kl_estimators_match_a_per_token_loop(seed, scale, estimator):
    g = torch.Generator().manual_seed(seed)
    logp = (-torch.rand(3, 5, generator=g, dtype=torch.float64) * 3).requires_grad_(True)
    ref = logp.detach() + torch.randn(3, 5, generator=g, dtype=torch.float64) * scale
    mask = torch.ones(3, 5, dtype=torch.bool)
    _, metrics = policy_loss(logp, logp.detach(), ref, torch.zeros(3, dtype=torch.float64), mask,
                             kl_coef=0.001, kl_estimator=estimator)
    expected = [_kl_reference(float(ref[r, t] - logp[r, t]), estimator)
                for r in range(3) for t in range(5)]
    assert metrics["kl"] == pytest.approx(sum(expected) / len(expected), rel=1e-9, abs=1e-12)


def test_low_var_kl_equals_k3_inside_its_clamps_and_stops_the_gradient_outside():
    logp = torch.tensor([[-1.0, -1.0]], dtype=torch.float64, requires_grad=True)
    ref = torch.tensor([[-0.5, 4.0]], dtype=torch.float64)  # d = 0.5 (inside), 5 (k3 > 10)
    grads = {}
    for name in ("k3", "low_var_kl"):
        loss, metrics = policy_loss(logp, logp.detach(), ref, torch.zeros(1, dtype=torch.float64),
                                    torch.ones(1, 2, dtype=torch.bool), kl_coef=1.0,
                                    kl_estimator=name)
        grads[name] = torch.autograd.grad(loss, logp)[0]
    assert grads["low_var_kl"][0, 0] == grads["k3"][0, 0]  # the same value and gradient inside
    assert grads["low_var_kl"][0, 1] == 0.0 and grads["k3"][0, 1] != 0.0  # clamped at 10


def test_unknown_kl_estimator_lists_the_valid_names():
    x = torch.zeros(1, 2)
    with pytest.raises(ValueError, match="valid names: k3, low_var_kl"):
        policy_loss(x, x, x, torch.zeros(1), torch.ones(1, 2, dtype=torch.bool),
                    kl_estimator="k9")
