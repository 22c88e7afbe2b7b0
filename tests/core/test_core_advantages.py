"""Advantage estimators: loop references, docs/design.md §5 properties, edge cases, registry."""

from __future__ import annotations

import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from mgrpo.core.advantages import (
    ADVANTAGE_ESTIMATORS,
    dr_grpo_advantages,
    get_advantage_estimator,
    group_advantages,
    rloo_advantages,
)
from mgrpo.core.constants import ADV_EPS

FAST = settings(deadline=None, max_examples=50, derandomize=True)
# parametrized tests run once per estimator/aggregation: fewer examples each, same total order
PER_CASE = settings(deadline=None, max_examples=25, derandomize=True)
NAMES = sorted(ADVANTAGE_ESTIMATORS)


def _reference(name: str, rewards: list[list[float]], mask: list[list[bool]]) -> list[list[float]]:
    """Obvious per-row loops of docs/design.md §3 (and the rloo / dr_grpo variants)."""
    out = []
    for row, keep in zip(rewards, mask, strict=True):
        vals = [r for r, k in zip(row, keep, strict=True) if k]
        n = len(vals)
        adv = [0.0] * len(row)
        if n >= 2 and max(vals) != min(vals):
            mean = sum(vals) / n
            std = math.sqrt(sum((v - mean) ** 2 for v in vals) / (n - 1))
            for i, (r, k) in enumerate(zip(row, keep, strict=True)):
                if not k:
                    continue
                if name == "grpo":
                    adv[i] = (r - mean) / (std + ADV_EPS)
                elif name == "rloo":
                    adv[i] = r - (sum(vals) - r) / (n - 1)
                else:  # dr_grpo
                    adv[i] = r - mean
        out.append(adv)
    return out


@st.composite
def groups(draw):
    """(rewards, mask) lists of shape (B, M); rewards are exact multiples of 1/4 in [-2, 2]."""
    b = draw(st.integers(1, 4))
    m = draw(st.integers(1, 10))
    g = torch.Generator().manual_seed(draw(st.integers(0, 2**31 - 1)))
    levels = draw(st.integers(1, 17))  # few levels -> many ties and constant rows
    rewards = (torch.randint(0, levels, (b, m), generator=g) - 8) / 4
    mask = torch.rand(b, m, generator=g) < draw(st.sampled_from([0.3, 0.7, 1.0]))
    return rewards.tolist(), mask.tolist()


@pytest.mark.parametrize("name", NAMES)
@PER_CASE
@given(data=groups(), continuous_seed=st.one_of(st.none(), st.integers(0, 2**31 - 1)))
def test_matches_loop_reference(name: str, data, continuous_seed: int | None) -> None:
    rewards, mask = data
    if continuous_seed is not None:  # also random continuous rewards (e.g. self-certainty)
        g = torch.Generator().manual_seed(continuous_seed)
        rewards = torch.randn(len(rewards), len(rewards[0]), generator=g, dtype=torch.float64)
        rewards = rewards.tolist()
    r = torch.tensor(rewards, dtype=torch.float64)
    m = torch.tensor(mask)
    adv = get_advantage_estimator(name)(r, m)
    assert adv.shape == r.shape and adv.dtype == torch.float64
    expected = torch.tensor(_reference(name, rewards, mask), dtype=torch.float64)
    torch.testing.assert_close(adv, expected, atol=1e-9, rtol=1e-9)
    # fp32 path agrees too
    torch.testing.assert_close(
        get_advantage_estimator(name)(r.float(), m), expected.float(), atol=1e-4, rtol=1e-4
    )


@pytest.mark.parametrize("name", NAMES)
@PER_CASE
@given(data=groups(), shift=st.integers(-64, 64).map(lambda x: x / 8))
def test_sum_to_zero_and_shift_invariant(name: str, data, shift: float) -> None:
    rewards, mask = data
    fn = get_advantage_estimator(name)
    r = torch.tensor(rewards)
    m = torch.tensor(mask)
    adv = fn(r, m)
    torch.testing.assert_close(adv.sum(dim=1), torch.zeros(len(rewards)), atol=1e-5, rtol=0)
    assert bool((adv[~m] == 0).all())
    torch.testing.assert_close(fn(r + shift, m), adv, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("name", NAMES)
@PER_CASE
@given(
    value=st.floats(-1e6, 1e6, allow_nan=False),
    m=st.integers(1, 12),
    seed=st.integers(0, 2**31 - 1),
)
def test_constant_group_gives_exact_zero(name: str, value: float, m: int, seed: int) -> None:
    mask = torch.rand(3, m, generator=torch.Generator().manual_seed(seed)) < 0.7
    rewards = torch.full((3, m), value)
    rewards[~mask] = float("nan")  # values outside L are never read
    adv = get_advantage_estimator(name)(rewards, mask)
    assert torch.equal(adv, torch.zeros(3, m))


@FAST
@given(data=groups(), scale=st.floats(0.1, 100.0))
def test_grpo_is_scale_invariant(data, scale: float) -> None:
    rewards, mask = data
    r = torch.tensor(rewards, dtype=torch.float64)
    m = torch.tensor(mask)
    torch.testing.assert_close(
        group_advantages(r * scale, m, eps=0.0), group_advantages(r, m, eps=0.0)
    )


def test_known_values() -> None:
    r = torch.tensor([[1.0, 0.0, 1.0, 0.0], [1.0, 0.0, 0.0, 5.0]])
    m = torch.tensor([[True, True, True, True], [True, True, True, False]])
    grpo = group_advantages(r, m)
    a = 0.5 / (math.sqrt(1 / 3) + 1e-6)
    torch.testing.assert_close(grpo[0], torch.tensor([a, -a, a, -a]))
    rloo = rloo_advantages(r, m)
    torch.testing.assert_close(rloo[1], torch.tensor([1.0, -0.5, -0.5, 0.0]))
    dr = dr_grpo_advantages(r, m)
    torch.testing.assert_close(dr[1], torch.tensor([2 / 3, -1 / 3, -1 / 3, 0.0]))


@pytest.mark.parametrize("name", NAMES)
def test_fewer_than_two_in_loss_set_gives_zero(name: str) -> None:
    fn = get_advantage_estimator(name)
    r = torch.tensor([[1.0, 0.0, 1.0], [1.0, 0.0, 1.0], [0.0, 0.0, 0.0]])
    m = torch.tensor([[True, False, False], [False, False, False], [True, True, True]])
    assert torch.equal(fn(r, m), torch.zeros(3, 3))
    assert fn(torch.zeros(2, 0), torch.zeros(2, 0, dtype=torch.bool)).shape == (2, 0)


def test_integer_rewards_and_01_mask_are_accepted() -> None:
    adv = group_advantages(torch.tensor([[1, 0]]), torch.tensor([[1, 1]]))
    assert adv.dtype == torch.float32
    torch.testing.assert_close(adv, torch.tensor([[0.5, -0.5]]) / (math.sqrt(0.5) + 1e-6))


def test_errors() -> None:
    with pytest.raises(ValueError, match="valid names: dr_grpo, grpo, rloo"):
        get_advantage_estimator("ppo")
    with pytest.raises(ValueError, match="NaN/inf"):
        group_advantages(torch.tensor([[float("nan"), 1.0]]), torch.ones(1, 2, dtype=torch.bool))
    with pytest.raises(ValueError, match="same shape"):
        group_advantages(torch.ones(2, 3), torch.ones(2, 2, dtype=torch.bool))
    with pytest.raises(ValueError, match="2 dims"):
        group_advantages(torch.ones(3), torch.ones(3, dtype=torch.bool))
    with pytest.raises(ValueError, match="eps"):
        group_advantages(torch.ones(1, 2), torch.ones(1, 2, dtype=torch.bool), eps=-1.0)
    assert get_advantage_estimator("grpo") is group_advantages
