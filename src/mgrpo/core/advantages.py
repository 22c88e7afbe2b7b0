"""Group-relative advantages over the rollouts of one prompt (docs/design.md §3).

For each prompt (row) the estimators see only the rollouts in the loss set L (``mask``):

- ``grpo`` (default): ``A = (r - mean_L r) / (std_L r + eps)``, Bessel-corrected std.
- ``rloo``: leave-one-out baseline ``A_i = r_i - mean_{j in L, j != i} r_j``.
- ``dr_grpo``: mean-centred, no std division (Dr. GRPO): ``A = r - mean_L r``.

For every estimator: rows with ``|L| < 2`` or a constant reward over L give ``A = 0`` exactly
(never NaN, never a rounding residue), and entries outside L are 0. In the step they are also
excluded from the loss by the mask (not merely given A = 0).

Departure from the paper: none for ``grpo``. Constant rows are detected as ``max == min``
rather than ``std == 0`` so that rounding (e.g. ``mean(0.1, 0.1, 0.1) != 0.1``) cannot turn a
constant group into a large spurious advantage ``tiny / (tiny + eps)``.
"""

from __future__ import annotations

from collections.abc import Callable

import torch

from mgrpo.core._checks import as_bool_mask, check_number, check_same_shape, check_tensor
from mgrpo.core.constants import ADV_EPS, MIN_GROUP_SIZE, STD_DDOF, compute_dtype
from mgrpo.registry import Registry

__all__ = [
    "ADVANTAGE_ESTIMATORS",
    "dr_grpo_advantages",
    "get_advantage_estimator",
    "group_advantages",
    "rloo_advantages",
]

#: ``estimator(rewards (B, M), mask (B, M)) -> advantages (B, M)``.
AdvantageEstimator = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]

#: Registry of advantage estimators, ``name -> estimator(rewards, mask)``.
ADVANTAGE_ESTIMATORS: Registry[AdvantageEstimator] = Registry("advantage estimator")


def _prepare(
    rewards: torch.Tensor, mask: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """Validate; return (rewards zeroed outside L, bool mask, |L| per row, row-is-degenerate).

    A row is degenerate (all advantages 0) when ``|L| < MIN_GROUP_SIZE`` or its masked rewards
    are all equal.
    """
    check_tensor(rewards, "rewards", ndim=2)
    check_tensor(mask, "mask", ndim=2)
    check_same_shape(rewards, "rewards", mask, "mask")
    mask = as_bool_mask(mask)
    r = rewards.to(compute_dtype(rewards.dtype))  # (B, M)
    if r.numel() and not bool((torch.isfinite(r) | ~mask).all()):
        raise ValueError("rewards hold NaN/inf values inside the mask")
    zero = torch.zeros((), dtype=r.dtype, device=r.device)
    r = torch.where(mask, r, zero)  # (B, M)
    n = mask.sum(dim=1)  # (B,)
    inf = torch.tensor(float("inf"), dtype=r.dtype, device=r.device)
    r_max = torch.where(mask, r, -inf).amax(dim=1) if r.shape[1] else r.sum(dim=1)  # (B,)
    r_min = torch.where(mask, r, inf).amin(dim=1) if r.shape[1] else r.sum(dim=1)  # (B,)
    degenerate = (n < MIN_GROUP_SIZE) | (r_max == r_min)  # (B,)
    return r, mask, n, degenerate


def _finish(adv: torch.Tensor, mask: torch.Tensor, degenerate: torch.Tensor) -> torch.Tensor:
    """Zero the entries outside L and the degenerate rows."""
    valid = mask & ~degenerate[:, None]  # (B, M)
    return torch.where(valid, adv, torch.zeros((), dtype=adv.dtype, device=adv.device))


@ADVANTAGE_ESTIMATORS.register("grpo")
def group_advantages(
    rewards: torch.Tensor, mask: torch.Tensor, eps: float = ADV_EPS
) -> torch.Tensor:
    """GRPO advantages: ``A = (r - mean_L r) / (std_L r + eps)`` per row.

    ``mean_L`` and ``std_L`` are over the masked entries of each row; std uses Bessel's
    correction (``ddof = STD_DDOF = 1``). Rows with fewer than 2 masked entries or a constant
    masked reward give 0; unmasked entries are 0. Per row the advantages sum to 0 and do not
    change when a constant is added to all rewards.

    Args:
        rewards: ``(B, M)`` rewards (any real dtype; computed in fp32, fp64 kept).
        mask: ``(B, M)`` bool (or 0/1), True for rollouts in the loss set L.
        eps: ``>= 0``, added to the std.

    Returns:
        ``(B, M)`` float tensor (fp32, or fp64 for fp64 rewards).

    Raises:
        ValueError: shapes differ / not 2-D, masked rewards not finite, or ``eps < 0``.
    """
    eps = check_number(eps, "eps", low=0.0)
    r, mask, n, degenerate = _prepare(rewards, mask)
    n_f = n.to(r.dtype).clamp_min(1)  # (B,)
    mean = r.sum(dim=1) / n_f  # (B,)
    centred = torch.where(mask, r - mean[:, None], r.new_zeros(()))  # (B, M)
    var = centred.square().sum(dim=1) / (n_f - STD_DDOF).clamp_min(1)  # (B,)
    adv = centred / (var.sqrt() + eps)[:, None]  # (B, M)
    return _finish(adv, mask, degenerate)


@ADVANTAGE_ESTIMATORS.register("rloo")
def rloo_advantages(rewards: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """RLOO advantages: ``A_i = r_i - (sum_L r - r_i) / (|L| - 1)`` for i in L.

    Equivalently ``|L| / (|L| - 1) * (r_i - mean_L r)``. Rows with ``|L| < 2`` or a constant
    masked reward give 0; unmasked entries are 0. Sums to 0 per row; shift-invariant.
    """
    r, mask, n, degenerate = _prepare(rewards, mask)
    n_f = n.to(r.dtype)  # (B,)
    mean = r.sum(dim=1) / n_f.clamp_min(1)  # (B,)
    scale = n_f / (n_f - 1).clamp_min(1)  # (B,)
    adv = (r - mean[:, None]) * scale[:, None]  # (B, M)
    return _finish(adv, mask, degenerate)


@ADVANTAGE_ESTIMATORS.register("dr_grpo")
def dr_grpo_advantages(rewards: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Dr. GRPO advantages: ``A = r - mean_L r`` (no std normalisation).

    Rows with ``|L| < 2`` or a constant masked reward give 0; unmasked entries are 0.
    """
    r, mask, n, degenerate = _prepare(rewards, mask)
    mean = r.sum(dim=1) / n.to(r.dtype).clamp_min(1)  # (B,)
    return _finish(r - mean[:, None], mask, degenerate)


def get_advantage_estimator(name: str) -> AdvantageEstimator:
    """Look up an estimator by name; unknown names raise a ValueError listing the valid ones."""
    return ADVANTAGE_ESTIMATORS.get(name)
