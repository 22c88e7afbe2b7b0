"""IQR entropy filter of M-GRPO (docs/design.md §3).

Per prompt, over the G trajectory entropies of all its rollouts (policy and momentum), compute
the quartiles ``q1, q3`` with ``torch.quantile`` (linear interpolation) and keep a rollout iff
``H >= q1 - k * (q3 - q1)``: only the *low*-entropy tail (over-confident, collapsing samples)
is dropped. ``k = None`` turns the filter off.

Departure from the paper: none intended. Non-finite entropies (NaN or inf) are treated as a bug
and raise instead of being silently kept or dropped.
"""

from __future__ import annotations

import torch

from mgrpo.core._checks import check_number, check_tensor
from mgrpo.core.constants import (
    DEFAULT_IQR_K,
    IQR_QUANTILES,
    QUANTILE_INTERPOLATION,
    compute_dtype,
)

__all__ = ["iqr_keep_mask", "iqr_bounds"]


def iqr_bounds(entropy: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-row quartiles ``(q1, q3)``, each ``(B,)``, of a finite ``(B, G)`` entropy tensor."""
    h = entropy.to(compute_dtype(entropy.dtype))  # (B, G)
    levels = torch.tensor(IQR_QUANTILES, dtype=h.dtype, device=h.device)  # (2,)
    q = torch.quantile(h, levels, dim=1, interpolation=QUANTILE_INTERPOLATION)  # (2, B)
    return q[0], q[1]


def iqr_keep_mask(entropy: torch.Tensor, k: float | None = DEFAULT_IQR_K) -> torch.Tensor:
    """Keep mask of the IQR entropy filter.

    ``keep[b, g] = H[b, g] >= q1[b] - k * (q3[b] - q1[b])`` with ``q1, q3`` the 25% / 75%
    quantiles of row ``b`` (``torch.quantile``, linear interpolation). Every point in
    ``[q1, q3]`` is kept (so at least half of each row), the result does not depend on the order
    of the G rollouts (permutation-equivariant), and a row with G = 1 keeps its only rollout.

    Args:
        entropy: ``(B, G)`` float tensor of trajectory entropies (fp32 or fp64 arithmetic).
        k: IQR multiplier, ``>= 0``; ``None`` disables the filter (all True).

    Returns:
        ``(B, G)`` bool tensor on ``entropy``'s device.

    Raises:
        ValueError: ``entropy`` is not a 2-D floating tensor, holds NaN or inf (with or without
            the filter), or ``k`` is negative / not finite.
    """
    check_tensor(entropy, "entropy", ndim=2)
    if not entropy.is_floating_point():
        raise ValueError(f"entropy must be a floating tensor, got dtype {entropy.dtype}")
    if k is not None:
        k = check_number(k, "k", low=0.0)
    if entropy.numel() and not bool(torch.isfinite(entropy).all()):
        bad = (~torch.isfinite(entropy)).nonzero()[:5].tolist()
        raise ValueError(f"entropy holds NaN/inf values (at [row, col] {bad}); this is a bug")
    keep = torch.ones(entropy.shape, dtype=torch.bool, device=entropy.device)  # (B, G)
    if k is None or entropy.numel() == 0:
        return keep
    q1, q3 = iqr_bounds(entropy)  # (B,), (B,)
    threshold = q1 - k * (q3 - q1).clamp_min(0)  # (B,); <= q1 even after rounding
    h = entropy.to(threshold.dtype)
    return h >= threshold[:, None]  # (B, G)
