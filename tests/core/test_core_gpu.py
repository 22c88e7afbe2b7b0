"""CUDA agrees with CPU for every core function (run with ``-m gpu`` on a machine with CUDA)."""

from __future__ import annotations

import pytest
import torch

from mgrpo.core import (
    ADVANTAGE_ESTIMATORS,
    LOSS_AGGREGATIONS,
    ema_update_,
    iqr_keep_mask,
    policy_loss,
    token_entropy,
    trajectory_entropy,
)

pytestmark = pytest.mark.gpu
CUDA = torch.device("cuda")


def test_entropy_bf16_on_cuda_matches_cpu() -> None:
    g = torch.Generator().manual_seed(0)
    logits = (torch.randn(4, 8, 32000, generator=g) * 4).to(torch.bfloat16)  # (R, T, V)
    mask = torch.rand(4, 8, generator=g) < 0.7
    mask[:, 0] = True
    h_cpu = token_entropy(logits, 1.1)
    h_gpu = token_entropy(logits.to(CUDA), 1.1)
    assert h_gpu.dtype == torch.float32 and h_gpu.device.type == "cuda"
    torch.testing.assert_close(h_gpu.cpu(), h_cpu, atol=1e-4, rtol=1e-5)
    torch.testing.assert_close(
        trajectory_entropy(h_gpu, mask.to(CUDA)).cpu(), trajectory_entropy(h_cpu, mask)
    )


def test_iqr_and_advantages_on_cuda_match_cpu() -> None:
    g = torch.Generator().manual_seed(1)
    h = torch.rand(8, 32, generator=g) * 3  # (B, G)
    assert torch.equal(iqr_keep_mask(h.to(CUDA)).cpu(), iqr_keep_mask(h))
    rewards = (torch.rand(8, 24, generator=g) < 0.5).float()  # (B, M)
    mask = torch.rand(8, 24, generator=g) < 0.8
    for name, fn in ADVANTAGE_ESTIMATORS.items():
        actual = fn(rewards.to(CUDA), mask.to(CUDA)).cpu()
        torch.testing.assert_close(actual, fn(rewards, mask), msg=f"estimator {name}")


@pytest.mark.parametrize("agg", sorted(LOSS_AGGREGATIONS))
def test_policy_loss_on_cuda_matches_cpu(agg: str) -> None:
    g = torch.Generator().manual_seed(2)
    logp_old = -torch.rand(16, 64, generator=g) * 3  # (R, T)
    logp = logp_old + torch.randn(16, 64, generator=g) * 0.2
    ref = logp_old + torch.randn(16, 64, generator=g) * 0.2
    adv = torch.randn(16, generator=g)
    mask = torch.rand(16, 64, generator=g) < 0.6
    results = []
    for device in ("cpu", CUDA):
        lp = logp.to(device).requires_grad_(True)
        args = (x.to(device) for x in (logp_old, ref, adv, mask))
        loss, metrics = policy_loss(lp, *args, agg=agg)
        loss.backward()
        results.append((loss.detach().cpu(), lp.grad.cpu(), metrics))
    (l_cpu, g_cpu, m_cpu), (l_gpu, g_gpu, m_gpu) = results
    torch.testing.assert_close(l_gpu, l_cpu)
    torch.testing.assert_close(g_gpu, g_cpu)
    for key, value in m_cpu.items():
        assert m_gpu[key] == pytest.approx(value, rel=1e-5, abs=1e-6), key


def test_ema_fp32_cuda_target_with_bf16_and_cpu_sources() -> None:
    g = torch.Generator().manual_seed(3)
    target_cpu = [torch.randn(256, 256, generator=g), torch.randn(7, generator=g)]
    source_cpu = [torch.randn(256, 256, generator=g), torch.randn(7, generator=g)]
    target = [t.to(CUDA, copy=True) for t in target_cpu]
    sources = [source_cpu[0].to(CUDA, torch.bfloat16), source_cpu[1]]  # bf16 cuda + fp32 cpu
    expected = [0.99 * t + 0.01 * s.float().cpu() for t, s in zip(target_cpu, sources, strict=True)]
    ema_update_(target, sources, 0.99)
    for t, e in zip(target, expected, strict=True):
        assert t.dtype == torch.float32 and t.device.type == "cuda"
        torch.testing.assert_close(t.cpu(), e, rtol=1e-6, atol=1e-6)
