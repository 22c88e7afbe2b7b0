"""The step applies the algorithm's DAPO-style shaping options (`ShapingSpec`) to its rewards and
loss set, after the rewards and before the advantages (the formulas: `core/shaping.py`), each
off by default:

1. soft overlong penalty (`algorithm.overlong_cache` = L_cache; L_max = max_new_tokens): the
   penalty of each train rollout's length is added to its reward;
2. overlong masking (`algorithm.overlong_mask`): truncated train rollouts leave the loss set;
3. dynamic sampling (`algorithm.dynamic_sampling: filter`, and `resample` for the prompts
   still constant after resampling, `train/step_resample.py`): a prompt whose train rollouts
   in the loss set all have the same (shaped) reward leaves the loss set entirely, so its
   tokens leave the loss normaliser too.

`shape_step` returns a `Shaped` record: the shaped rewards and loss set, and per-prompt
`ShapingStats` for the metrics (`reward/overlong_penalty_mean`, `dynamic/filtered_fraction`),
only for the options that are on.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch

from mgrpo.core.shaping import informative_groups, overlong_keep, soft_overlong_penalty
from mgrpo.methods.base import ShapingSpec
from mgrpo.rollout import RolloutBatch

__all__ = ["Shaped", "ShapingStats", "shape_step"]


@dataclass(frozen=True)
class ShapingStats:
    """Per-prompt values of the shaping options that are on (None: the option is off). On the
    CPU: gathered over ranks with the metric inputs."""

    overlong_penalty: list[float] | None = None  # (B,) mean soft overlong penalty per prompt
    dynamic_filtered: list[float] | None = None  # (B,) 1.0 where the prompt left the loss set

    @staticmethod
    def cat(parts: Sequence[ShapingStats]) -> ShapingStats:
        """Prompt-major concatenation over ranks (a field None on any rank -> None)."""
        def joined(values: list[list[float] | None]) -> list[float] | None:
            return None if any(v is None for v in values) else [x for v in values for x in v]

        return ShapingStats(joined([p.overlong_penalty for p in parts]),
                            joined([p.dynamic_filtered for p in parts]))


@dataclass(frozen=True)
class Shaped:
    """The step's rewards and loss set after shaping (on the rollouts' device D)."""

    rewards: torch.Tensor  # (B, M) fp32
    in_loss: torch.Tensor  # (B, M) bool
    stats: ShapingStats


def shape_step(rewards: torch.Tensor, in_loss: torch.Tensor, train: RolloutBatch,
               options: ShapingSpec, max_new_tokens: int) -> Shaped:
    """Rewards (B, M) and loss set (B, M) after `options`; with every option off they come
    back as they are. `train`: the (B*M, T) train rollouts, prompt-major."""
    B, M = rewards.shape
    penalty_stats = filtered_stats = None
    if options.overlong_cache is not None:
        if options.overlong_cache > max_new_tokens:
            raise ValueError(f"algorithm.overlong_cache ({options.overlong_cache}) must not "
                             f"exceed generation.max_new_tokens ({max_new_tokens})")
        penalty = soft_overlong_penalty(train.lengths.view(B, M), max_new_tokens,
                                        options.overlong_cache).to(rewards.device)  # (B, M)
        rewards = rewards + penalty
        penalty_stats = penalty.mean(dim=1).tolist()
    if options.overlong_mask:
        truncated = torch.tensor([fr == "length" for fr in train.finish_reasons],
                                 dtype=torch.bool, device=in_loss.device).view(B, M)
        in_loss = overlong_keep(in_loss, truncated)
    if options.dynamic_sampling in ("filter", "resample"):
        informative = informative_groups(rewards, in_loss)  # (B,)
        in_loss = in_loss & informative[:, None]
        filtered_stats = (~informative).float().tolist()
    return Shaped(rewards, in_loss, ShapingStats(penalty_stats, filtered_stats))
