"""EVOL-RL's novelty-rescaled majority reward, for one prompt's rollouts (pure; tensors in).

Zhou et al. 2025, arXiv 2509.15194 (EVOL-RL); the formula is the public code's
(YujunZhou/EVOL-RL, ``verl/verl/workers/reward_manager/semantic_novelty.py``,
``_compute_novelty_rewards`` and ``_compute_similarity_based_rewards``). Per prompt, each
rollout i has an embedding e_i and a class: it matches the majority vote (``True``), gives
another answer (``False``) or has no parsable answer (``None``, "invalid"):

    invalid                         r_i = -1
    S_ij = clip(cos(e_i, e_j), 0, 1)                         over the valid rollouts
    avg_i = mean_{j != i, same class} S_ij   (the mean over all other valid j when i is
                                              alone in its class)
    max_i = max_{j != i} S_ij
    nov_i = 1 - (avg_i + max_i) / 2
    within each class C:  u_i = (nov_i - min_C nov) / (max_C nov - min_C nov)
    matches the vote      r_i = 0.5 + 0.5 u_i     in [0.5, 1]
    another answer        r_i = -1 + 0.5 u_i      in [-1, -0.5]

Edge cases, as in the public code: a class whose novelties are all equal gets the middle of
its range (0.75 / -0.75); a class of one gets 1.0 (it matches the vote) or -0.5 (it does
not); when some rollouts are invalid and at most one valid rollout is left, EVERY rollout
gets -1 (that one included); a prompt of a single rollout keeps its 0/1 vote reward. The
cosine floors each norm at ``EMBED_NORM_EPS``. Computed in float64 (the public code: float32
NumPy), so the min-max rescaling does not depend on the embeddings' dtype, and the novelties
are rounded to ``NOVELTY_DECIMALS`` before it: novelties equal in exact arithmetic (identical
embeddings) tie, where the public code's rounding noise would be stretched to [0, 1].
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from mgrpo.core._checks import check_tensor
from mgrpo.core.constants import EMBED_NORM_EPS, NOVELTY_DECIMALS

__all__ = ["novelty_rewards", "similarity"]

#: reward of a rollout without a parsable answer
INVALID_REWARD = -1.0
#: (lower end of the range, reward when alone in the class) of each class
_MATCH = (0.5, 1.0)
_OTHER = (-1.0, -0.5)


def similarity(embeddings: torch.Tensor) -> torch.Tensor:
    """(n, n) float64 ``clip(cos(e_i, e_j), 0, 1)``, each norm floored at EMBED_NORM_EPS."""
    e = check_tensor(embeddings, "embeddings", ndim=2).detach().to(torch.float64)
    e = e / e.norm(dim=1, keepdim=True).clamp_min(EMBED_NORM_EPS)
    return (e @ e.T).clamp(0.0, 1.0)


def novelty_rewards(embeddings: torch.Tensor, matches: Sequence[bool | None]) -> list[float]:
    """EVOL-RL rewards of one prompt's n rollouts (module docstring).

    Args:
        embeddings: (n, D) one embedding per rollout (rows of invalid rollouts are ignored).
        matches: n flags: True = the answer is the vote's label, False = another answer,
            None = no parsable answer.

    Returns:
        n rewards in [-1, 1].
    """
    check_tensor(embeddings, "embeddings", ndim=2)
    n = len(matches)
    if embeddings.shape[0] != n:
        raise ValueError(f"one embedding per rollout: {embeddings.shape[0]} embeddings, "
                         f"{n} rollouts")
    if n <= 1:  # the public code keeps the vote reward of a lone rollout
        return [1.0 if m else 0.0 for m in matches]
    valid = [i for i, m in enumerate(matches) if m is not None]
    rewards = [INVALID_REWARD] * n
    if len(valid) <= 1:  # all invalid, or one valid rollout left: every rollout gets -1
        return rewards
    sim = similarity(embeddings[valid])  # (k, k)
    k = len(valid)
    same = torch.tensor([[matches[a] == matches[b] for b in valid] for a in valid])  # (k, k)
    other = ~torch.eye(k, dtype=torch.bool)
    same &= other
    n_same = same.sum(1)
    avg_all = (sim * other).sum(1) / (k - 1)
    avg_same = (sim * same).sum(1) / n_same.clamp_min(1)
    avg = torch.where(n_same > 0, avg_same, avg_all)
    most = sim.masked_fill(~other, float("-inf")).amax(1)
    novelty = torch.round(1.0 - (0.5 * avg + 0.5 * most), decimals=NOVELTY_DECIMALS)  # (k,)
    for cls, (low, alone) in ((True, _MATCH), (False, _OTHER)):
        members = [a for a, i in enumerate(valid) if matches[i] is cls]
        if not members:
            continue
        if len(members) == 1:
            rewards[valid[members[0]]] = alone
            continue
        nov = novelty[members]
        lo, hi = nov.min(), nov.max()
        scaled = (nov - lo) / (hi - lo) if hi > lo else torch.full_like(nov, 0.5)
        for a, u in zip(members, scaled.tolist()):
            rewards[valid[a]] = low + 0.5 * u
    return rewards
