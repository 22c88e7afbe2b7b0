"""DAPO-style shaping of rewards and of the loss set (pure tensor functions).

- ``soft_overlong_penalty`` (DAPO, Yu et al. 2025, arXiv 2503.14476, eq. 13): with
  ``L_max`` the response budget and ``L_cache`` the soft band,

      R(|y|) = 0                                  |y| <= L_max - L_cache
             = ((L_max - L_cache) - |y|) / L_cache  L_max - L_cache < |y| <= L_max
             = -1                                 |y| > L_max

  added to the task reward.
- ``overlong_keep``: overlong masking; a truncated rollout (stopped by the length budget)
  leaves the loss set.
- ``informative_groups`` (DAPO dynamic sampling): a prompt is informative iff the rewards of
  its rollouts in the loss set are not all equal (``max != min``) and it has at least
  ``MIN_GROUP_SIZE`` of them. Non-informative groups have zero advantage anyway; dropping them
  from the loss set also takes their tokens out of the loss normaliser.
"""

from __future__ import annotations

import torch

from mgrpo.core._checks import as_bool_mask, check_int, check_same_shape, check_tensor
from mgrpo.core.constants import MIN_GROUP_SIZE, compute_dtype

__all__ = ["informative_groups", "overlong_keep", "soft_overlong_penalty"]


def soft_overlong_penalty(lengths: torch.Tensor, max_len: int, cache: int) -> torch.Tensor:
    """DAPO's soft overlong penalty per response length (formula: module docstring).

    Args:
        lengths: response lengths in tokens, any shape (ints or floats).
        max_len: ``L_max >= 1``.
        cache: ``L_cache`` in ``[1, L_max]``.

    Returns:
        fp32 tensor of ``lengths``' shape with values in ``[-1, 0]``.
    """
    check_tensor(lengths, "lengths")
    max_len = check_int(max_len, "max_len", low=1, rule="a positive int")
    cache = check_int(cache, "cache", low=1, rule="a positive int")
    if cache > max_len:
        raise ValueError(f"cache ({cache}) must not exceed max_len ({max_len})")
    n = lengths.to(torch.float32)
    start = float(max_len - cache)
    band = (start - n) / cache
    out = torch.where(n <= start, torch.zeros_like(n), band)
    return torch.where(n > max_len, torch.full_like(n, -1.0), out)


def overlong_keep(in_loss: torch.Tensor, truncated: torch.Tensor) -> torch.Tensor:
    """``in_loss & ~truncated`` (bool, same shape): truncated rollouts leave the loss set."""
    in_loss = as_bool_mask(in_loss, "in_loss")
    truncated = as_bool_mask(truncated, "truncated")
    check_same_shape(in_loss, "in_loss", truncated, "truncated")
    return in_loss & ~truncated


def informative_groups(rewards: torch.Tensor, in_loss: torch.Tensor) -> torch.Tensor:
    """``(B,)`` bool: the group's in-loss rewards are not all equal (module docstring)."""
    check_tensor(rewards, "rewards", ndim=2)
    in_loss = as_bool_mask(in_loss, "in_loss")
    check_same_shape(rewards, "rewards", in_loss, "in_loss")
    r = rewards.to(compute_dtype(rewards.dtype))
    inf = torch.tensor(float("inf"), dtype=r.dtype, device=r.device)
    if r.shape[1] == 0:
        return torch.zeros(r.shape[0], dtype=torch.bool, device=r.device)
    r_max = torch.where(in_loss, r, -inf).amax(dim=1)
    r_min = torch.where(in_loss, r, inf).amin(dim=1)
    return (in_loss.sum(dim=1) >= MIN_GROUP_SIZE) & (r_max != r_min)
