"""token_entropy / trajectory_entropy: definition, stability, bf16 accuracy, edge cases."""

from __future__ import annotations

import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from mgrpo.core.entropy import token_entropy, trajectory_entropy

FAST = settings(deadline=None, max_examples=50, derandomize=True)


def _reference_entropy(logits: torch.Tensor, temperature: float) -> torch.Tensor:
    """Naive fp64 ``-sum p log p`` with ``p = softmax(logits / T)``."""
    z = logits.double() / temperature
    p = torch.exp(z - z.max(dim=-1, keepdim=True).values)
    p = p / p.sum(dim=-1, keepdim=True)
    return -(p * torch.log(p)).nansum(dim=-1)


@FAST
@given(
    seed=st.integers(0, 2**31 - 1),
    vocab=st.integers(1, 64),
    scale=st.floats(0.01, 30.0),
    temperature=st.floats(0.1, 3.0),
)
def test_token_entropy_matches_fp64_reference(
    seed: int, vocab: int, scale: float, temperature: float
) -> None:
    g = torch.Generator().manual_seed(seed)
    logits = torch.randn(3, 5, vocab, generator=g) * scale  # (3, 5, V)
    h = token_entropy(logits, temperature)
    assert h.shape == (3, 5) and h.dtype == torch.float32
    ref = _reference_entropy(logits, temperature)
    torch.testing.assert_close(h.double(), ref, atol=1e-5, rtol=1e-5)
    assert bool((h >= -1e-6).all()) and bool((h <= math.log(vocab) + 1e-5).all())


def test_token_entropy_known_values() -> None:
    uniform = torch.zeros(7, 11)
    torch.testing.assert_close(token_entropy(uniform), torch.full((7,), math.log(11)))
    one_hot = torch.tensor([[0.0, 1e4, 0.0]])
    assert float(token_entropy(one_hot)[0]) == pytest.approx(0.0, abs=1e-6)
    # temperature scales the logits: T -> inf approaches uniform, T = 0.5 doubles them
    logits = torch.tensor([1.0, 2.0, 3.0])
    torch.testing.assert_close(token_entropy(logits, 0.5), token_entropy(2 * logits))


def test_token_entropy_is_stable_for_huge_logits_and_masked_vocab() -> None:
    huge = torch.tensor([[1e30, 1e30, -1e30]])
    torch.testing.assert_close(token_entropy(huge), torch.tensor([math.log(2)]))
    masked = torch.tensor([[0.0, 0.0, float("-inf"), float("-inf")]])
    h = token_entropy(masked)
    assert torch.isfinite(h).all()
    torch.testing.assert_close(h, torch.tensor([math.log(2)]))


@settings(deadline=None, max_examples=20, derandomize=True)
@given(seed=st.integers(0, 2**31 - 1), scale=st.floats(0.1, 20.0))
def test_bf16_logits_accumulate_in_fp32(seed: int, scale: float) -> None:
    g = torch.Generator().manual_seed(seed)
    logits = (torch.randn(2, 1024, generator=g) * scale).to(torch.bfloat16)  # (2, V)
    h = token_entropy(logits, temperature=1.1)
    assert h.dtype == torch.float32
    # reference on the SAME bf16-rounded values, in fp64: only accumulation error remains
    ref = _reference_entropy(logits.double(), 1.1)
    torch.testing.assert_close(h.double(), ref, atol=1e-4, rtol=1e-5)


def test_fp64_logits_stay_fp64() -> None:
    assert token_entropy(torch.zeros(2, 3, dtype=torch.float64)).dtype == torch.float64


@pytest.mark.parametrize("bad", [0.0, -1.0, float("nan"), float("inf"), True, "1"])
def test_token_entropy_rejects_bad_temperature(bad: object) -> None:
    with pytest.raises(ValueError, match="temperature"):
        token_entropy(torch.zeros(2, 3), bad)  # type: ignore[arg-type]


def test_token_entropy_rejects_integer_logits() -> None:
    with pytest.raises(ValueError, match="logits"):
        token_entropy(torch.zeros(2, 3, dtype=torch.long))


def test_token_entropy_gradient_is_finite_with_masked_vocab() -> None:
    logits = torch.tensor([[0.5, -0.5, float("-inf")]], requires_grad=True)
    token_entropy(logits).sum().backward()
    assert torch.isfinite(logits.grad[:, :2]).all()


@FAST
@given(seed=st.integers(0, 2**31 - 1), rows=st.integers(1, 6), cols=st.integers(1, 9))
def test_trajectory_entropy_is_masked_mean(seed: int, rows: int, cols: int) -> None:
    g = torch.Generator().manual_seed(seed)
    h = torch.rand(rows, cols, generator=g) * 3  # (R, T)
    mask = torch.rand(rows, cols, generator=g) < 0.6
    mask[:, 0] = True  # every rollout has at least one token
    h_padded = torch.where(mask, h, torch.full_like(h, float("nan")))  # padding must not leak
    out = trajectory_entropy(h_padded, mask)
    assert out.shape == (rows,)
    for r in range(rows):
        vals = [float(h[r, t]) for t in range(cols) if mask[r, t]]
        assert float(out[r]) == pytest.approx(sum(vals) / len(vals), rel=1e-5, abs=1e-6)
    torch.testing.assert_close(trajectory_entropy(h, mask.long()), out)


def test_trajectory_entropy_rejects_empty_rollout_and_bad_shapes() -> None:
    mask = torch.tensor([[True, False], [False, False]])
    with pytest.raises(ValueError, match=r"no valid token.*\[1\]"):
        trajectory_entropy(torch.ones(2, 2), mask)
    with pytest.raises(ValueError, match="same shape"):
        trajectory_entropy(torch.ones(2, 3), torch.ones(2, 2, dtype=torch.bool))
    with pytest.raises(ValueError, match="2 dims"):
        trajectory_entropy(torch.ones(3), torch.ones(3, dtype=torch.bool))
    with pytest.raises(ValueError, match="0/1"):
        trajectory_entropy(torch.ones(1, 2), torch.tensor([[0.5, 1.0]]))


def test_entropy_pipeline_on_logits() -> None:
    """token_entropy -> trajectory_entropy over a padded batch, EOS included, padding excluded."""
    g = torch.Generator().manual_seed(0)
    logits = torch.randn(2, 4, 10, generator=g)  # (R, T, V)
    mask = torch.tensor([[True, True, True, False], [True, False, False, False]])
    traj = trajectory_entropy(token_entropy(logits, 1.1), mask)
    ref = _reference_entropy(logits, 1.1)
    expected = torch.stack([ref[0, :3].mean(), ref[1, :1].mean()]).float()
    torch.testing.assert_close(traj, expected)
