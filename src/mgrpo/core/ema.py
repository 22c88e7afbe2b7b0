"""In-place exponential moving average of parameters: the M-GRPO momentum model (docs/design.md §3).

After every optimizer step ``theta_k <- m * theta_k + (1 - m) * theta_q`` (m = 0.99 in the
paper). The target should be kept in fp32: in bf16 an update of size ``(1 - m) * delta`` is
below half an ulp of most weights and the momentum model silently stops moving. A bf16 source
(the policy) is cast to the target dtype before the update.

This is the pure update only; gathering sharded parameters (FSDP / ZeRO-3) belongs to the
caller around it.

Departure from the paper: none. ``m == 1`` returns without touching the target (exact no-op)
and ``m == 0`` is an exact copy, rather than relying on ``x * 1 + y * 0`` rounding.
"""

from __future__ import annotations

from collections.abc import Iterable

import torch

from mgrpo.core._checks import check_number

__all__ = ["ema_update_"]


@torch.no_grad()
def ema_update_(
    target: Iterable[torch.Tensor], source: Iterable[torch.Tensor], momentum: float
) -> None:
    """``t <- momentum * t + (1 - momentum) * s`` for each pair, in place on ``target``.

    Uses ``torch._foreach_mul_`` / ``torch._foreach_add_`` on groups of tensors sharing device
    and dtype (one fused launch per group instead of one per parameter). Sources whose dtype or
    device differs from their target are cast first (fp32 target + bf16 source is the intended
    M-GRPO setup). Runs under ``torch.no_grad`` so targets may be ``nn.Parameter``s.

    Args:
        target: tensors updated in place (floating dtype), e.g. ``momentum_model.parameters()``.
        source: tensors of the same shapes, same order, e.g. ``policy.parameters()``.
        momentum: ``m`` in ``[0, 1]``; 1 leaves the target unchanged, 0 copies the source.

    Raises:
        ValueError: ``momentum`` outside ``[0, 1]`` (or not finite), different numbers of
            tensors, a shape mismatch at some index, or a non-floating target.
    """
    m = check_number(momentum, "momentum", low=0.0, high=1.0)
    targets = list(target)
    sources = list(source)
    if len(targets) != len(sources):
        raise ValueError(
            f"target and source must hold the same number of tensors, "
            f"got {len(targets)} and {len(sources)}"
        )
    for i, (t, s) in enumerate(zip(targets, sources, strict=True)):
        if not isinstance(t, torch.Tensor) or not isinstance(s, torch.Tensor):
            raise ValueError(f"target[{i}] and source[{i}] must be tensors")
        if t.shape != s.shape:
            raise ValueError(
                f"shape mismatch at index {i}: target {tuple(t.shape)} vs source {tuple(s.shape)}"
            )
        if not t.is_floating_point():
            raise ValueError(f"target[{i}] must be a floating tensor, got dtype {t.dtype}")
    if m == 1.0 or not targets:
        return
    # group by (device, dtype) of the target; sources cast to match
    groups: dict[tuple[torch.device, torch.dtype], tuple[list[torch.Tensor], list[torch.Tensor]]]
    groups = {}
    for t, s in zip(targets, sources, strict=True):
        if s.dtype != t.dtype or s.device != t.device:
            s = s.to(device=t.device, dtype=t.dtype)
        ts, ss = groups.setdefault((t.device, t.dtype), ([], []))
        ts.append(t)
        ss.append(s)
    for ts, ss in groups.values():
        if m == 0.0:
            torch._foreach_copy_(ts, ss)
        else:
            torch._foreach_mul_(ts, m)
            torch._foreach_add_(ts, ss, alpha=1.0 - m)
