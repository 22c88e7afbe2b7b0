"""The step's DAPO-style shaping of rewards and of the loss set (`core.shaping` formulas),
applied after the rewards and before the advantages, each off by default:

1. soft overlong penalty (`algorithm.overlong_cache` = L_cache; L_max = max_new_tokens): the
   penalty of each train rollout's length is added to its reward;
2. overlong masking (`algorithm.overlong_mask`): truncated train rollouts leave the loss set;
3. dynamic sampling (`algorithm.dynamic_sampling: filter`): a prompt whose train rollouts in
   the loss set all have the same (shaped) reward leaves the loss set entirely, so its tokens
   leave the loss normaliser too.

Returns per-prompt flags for the metrics (`dynamic/filtered_fraction`,
`response/overlong_penalty_mean`), only for the options that are on.
"""

from __future__ import annotations

import torch

from mgrpo.core.shaping import informative_groups, overlong_keep, soft_overlong_penalty
from mgrpo.rollout import RolloutBatch
from mgrpo.train.presets import AlgorithmSpec

__all__ = ["shape"]


def shape(rewards: torch.Tensor, in_loss: torch.Tensor, train: RolloutBatch, spec: AlgorithmSpec,
          B: int, M: int, max_new_tokens: int
          ) -> tuple[torch.Tensor, torch.Tensor, dict[str, list[float]]]:
    """(rewards (B, M), in_loss (B, M), per-prompt metric inputs) after the options of `spec`.
    With every option off the inputs come back as they are."""
    info: dict[str, list[float]] = {}
    if spec.overlong_cache is not None:
        if spec.overlong_cache > max_new_tokens:
            raise ValueError(f"algorithm.overlong_cache ({spec.overlong_cache}) must not exceed "
                             f"generation.max_new_tokens ({max_new_tokens})")
        penalty = soft_overlong_penalty(train.lengths.view(B, M), max_new_tokens,
                                        spec.overlong_cache).to(rewards.device)
        rewards = rewards + penalty
        info["overlong_penalty"] = penalty.mean(dim=1).tolist()
    if spec.overlong_mask:
        truncated = torch.tensor([fr == "length" for fr in train.finish_reasons],
                                 dtype=torch.bool, device=in_loss.device).view(B, M)
        in_loss = overlong_keep(in_loss, truncated)
    if spec.dynamic_sampling == "filter":
        informative = informative_groups(rewards, in_loss)  # (B,)
        in_loss = in_loss & informative[:, None]
        info["dynamic_filtered"] = (~informative).float().tolist()
    return rewards, in_loss, info
