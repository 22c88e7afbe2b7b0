"""Diagnostics of the vote pool for the study: pure functions of a step's gathered statistics.

Keys (each a fraction in [0, 1]; NaN, written as null, where the denominator is empty):

- ``label/tie_fraction``: prompts whose winning cluster tied with another (the tie rule
  chose); only when the step votes.
- ``filter/dropped_policy`` / ``filter/dropped_momentum``: IQR-dropped share of the policy
  rollouts (train + vote-only) and of the momentum rollouts (the latter only when N > 0).
- ``filter/dropped_accuracy`` / ``filter/kept_accuracy``: accuracy against the ground truth of
  the dropped and of the kept rollouts of the whole pool (labelled data only).
- ``reward/hit_rate``: share of train rollouts with a reward > 0.
- ``pool/maj@G``, ``pool/pass@G`` (labelled data only): the plain majority vote of the whole
  pool of G answers (no filter, one vote each, ties to the first opened cluster) is correct;
  some answer of the pool is correct.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch

__all__ = ["pool_diagnostics"]


def _share(hits: float, total: float) -> float:
    return hits / total if total else math.nan


def pool_diagnostics(
    *,
    ties: Sequence[bool] | None,
    keep: torch.Tensor,
    n_policy: int,
    rewards: torch.Tensor,
    pool_correct: Sequence[Sequence[bool]] | None,
    majority_correct: Sequence[bool] | None,
) -> dict[str, float]:
    """The diagnostics above.

    Args:
        ties: (B,) whether each prompt's vote was a tie; None = the step does not vote.
        keep: (B, G) bool IQR keep mask; the first ``n_policy`` columns are policy rollouts.
        n_policy: M + V.
        rewards: (B, M) rewards of the train rollouts.
        pool_correct: (B, G) correctness of each pool answer vs the truth; None = unlabelled.
        majority_correct: (B,) correctness of the plain pool majority; None = unlabelled.
    """
    keep = keep.bool().cpu()
    dropped = ~keep
    out: dict[str, float] = {}
    if ties is not None:
        out["label/tie_fraction"] = _share(sum(map(bool, ties)), len(ties))
    out["filter/dropped_policy"] = _share(float(dropped[:, :n_policy].sum()), dropped[:, :n_policy].numel())
    if keep.shape[1] > n_policy:
        momentum = dropped[:, n_policy:]
        out["filter/dropped_momentum"] = _share(float(momentum.sum()), momentum.numel())
    out["reward/hit_rate"] = _share(float((rewards.float() > 0).sum()), rewards.numel())
    if pool_correct is not None:
        correct = torch.tensor([[bool(c) for c in row] for row in pool_correct],
                               dtype=torch.bool).reshape(keep.shape)
        out["filter/dropped_accuracy"] = _share(float((correct & dropped).sum()), float(dropped.sum()))
        out["filter/kept_accuracy"] = _share(float((correct & keep).sum()), float(keep.sum()))
        out["pool/pass@G"] = _share(float(correct.any(dim=1).sum()), correct.shape[0])
    if majority_correct is not None:
        out["pool/maj@G"] = _share(sum(map(bool, majority_correct)), len(majority_correct))
    return out
