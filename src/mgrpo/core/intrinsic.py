"""Label-free reward formulas of the methods M-GRPO is compared with (pure; lists and tensors).

Per prompt, over its rollouts (rows of a ``(B, M)`` layout):

- ``cluster_share`` (EMPO, Zhang et al. 2025, arXiv 2504.05812, semantic entropy
  minimisation): the rollouts are clustered by answer equivalence with the voting walk
  (:func:`mgrpo.core.voting.cluster_walk`) over the group's pool, and rollout ``i`` gets
  ``r_i = |c(i)| / n`` with ``c(i)`` its cluster and ``n`` the number of rollouts in the pool;
  no parsed answer -> 0. As in the authors' code (QingyangZhang/EMPO, ``trl/src/open_r1/
  rewards.py``), the unparsed rollouts form one cluster of their own for the semantic entropy
  ``H = -sum_c p_c log p_c``, and a prompt with ``H >= log n`` (every cluster a singleton)
  gets 0 for every rollout (their entropy threshold).
- ``negative_entropy`` (EM-RL, Agarwal et al. 2025, arXiv 2505.15134, token-level EM-RL):
  ``r_i = -sum_t H_t`` over rollout ``i``'s valid response tokens (``reduce="sum"``, the
  paper's trajectory estimate), or ``-mean_t H_t`` (``reduce="mean"``).
- ``last_tokens_negative_entropy`` (RENT, Prabhudesai et al. 2025, arXiv 2505.22660):
  ``r_i = -mean H_t`` over the LAST ``k`` valid response tokens of rollout ``i`` (EOS
  included; fewer when the response is shorter; ``k = None`` = every token). The paper
  scores the answer tokens; the last ``k`` tokens are where a boxed final answer sits, and
  which tokens are used is exactly this rule, nothing else.
- ``bernoulli_rewards`` (the random-reward control): i.i.d. ``Bernoulli(p)`` from
  ``torch.Generator().manual_seed(seed)`` on the CPU, so a seed gives the same rewards on
  every device.

``H_t`` is the full-distribution token entropy of the sampling distribution
(:func:`mgrpo.core.entropy.token_entropy`).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch

from mgrpo.core._checks import as_bool_mask, check_int, check_number, check_same_shape, check_tensor
from mgrpo.core.constants import compute_dtype
from mgrpo.core.voting import cluster_walk

__all__ = [
    "bernoulli_rewards",
    "cluster_share",
    "last_tokens_negative_entropy",
    "negative_entropy",
]


def cluster_share(
    pools: Sequence[Sequence[str | None]],
    equivalent: Callable[[str, str], bool],
    rewarded: int | None = None,
) -> list[list[float]]:
    """EMPO reward ``|c(i)| / n`` per answer of each pool (module docstring).

    Args:
        pools: one list of answers per prompt (None = no parsed answer), pool order.
        equivalent: ``equivalent(answer, representative) -> bool`` (reflexive).
        rewarded: only the first ``rewarded`` answers of each pool get a reward (the policy's
            train rollouts); None = all.

    Returns:
        ``(B, rewarded)`` nested lists of floats in ``[0, 1]``.
    """
    out = []
    for pool in pools:
        _, clusters = cluster_walk(pool, equivalent)
        n = len(pool)
        sizes: dict[int, int] = {}
        for j in clusters:
            if j is not None:
                sizes[j] = sizes.get(j, 0) + 1
        unparsed = clusters.count(None)
        singletons = all(c == 1 for c in sizes.values()) and unparsed <= 1  # H = log n
        take = clusters if rewarded is None else clusters[:rewarded]
        out.append([0.0 if j is None or singletons else sizes[j] / n for j in take])
    return out


def _masked(token_entropy: torch.Tensor, mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    check_tensor(token_entropy, "token_entropy", ndim=2)
    check_tensor(mask, "mask", ndim=2)
    check_same_shape(token_entropy, "token_entropy", mask, "mask")
    mask = as_bool_mask(mask)
    h = token_entropy.to(compute_dtype(token_entropy.dtype))
    return torch.where(mask, h, h.new_zeros(())), mask


def negative_entropy(token_entropy: torch.Tensor, mask: torch.Tensor, reduce: str = "sum") -> torch.Tensor:
    """EM-RL reward ``-sum_t H_t`` (or ``-mean_t``) per rollout: ``(R, T), (R, T) -> (R,)``.

    A rollout with no valid token gets 0. Raises ValueError on bad shapes or ``reduce``.
    """
    if reduce not in ("sum", "mean"):
        raise ValueError(f"reduce must be 'sum' or 'mean', got {reduce!r}")
    h, mask = _masked(token_entropy, mask)
    total = h.sum(dim=-1)
    if reduce == "sum":
        return -total
    return -total / mask.sum(dim=-1).clamp_min(1).to(h.dtype)


def last_tokens_negative_entropy(
    token_entropy: torch.Tensor, mask: torch.Tensor, k: int | None
) -> torch.Tensor:
    """RENT reward: ``-mean H_t`` over the last ``k`` valid tokens of each rollout, ``(R,)``.

    Valid tokens need not be contiguous; "last" is by position among the valid ones. A rollout
    with no valid token gets 0. ``k`` None = every valid token.
    """
    h, mask = _masked(token_entropy, mask)
    if k is not None:
        k = check_int(k, "k", low=1, rule="a positive int")
        # rank from the end among valid tokens: 1 = last valid token
        from_end = mask.flip(-1).cumsum(-1).flip(-1)
        mask = mask & (from_end <= k)
        h = torch.where(mask, h, h.new_zeros(()))
    return -h.sum(dim=-1) / mask.sum(dim=-1).clamp_min(1).to(h.dtype)


def bernoulli_rewards(
    shape: tuple[int, ...], p: float, seed: int, device: torch.device | None = None
) -> torch.Tensor:
    """i.i.d. ``Bernoulli(p)`` fp32 rewards of ``shape``, drawn on the CPU from ``seed``."""
    p = check_number(p, "p", low=0.0, high=1.0)
    g = torch.Generator().manual_seed(int(seed))
    draws = (torch.rand(shape, generator=g) < p).float()
    return draws if device is None else draws.to(device)
