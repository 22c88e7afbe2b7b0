"""EMPO: semantic entropy minimisation; a rollout's reward is the share of its answer cluster.

    r_bi = |c(i)| / G        c(i): rollout i's cluster of equivalent answers among the prompt's
                             G policy rollouts (the voting walk, core/voting.py); no parsed
                             answer -> 0; every cluster a singleton (H_sem = log G) -> 0 for all

(`core.intrinsic.cluster_share`). No vote: the clusters are the signal.

Paper: Zhang et al. 2025, arXiv 2504.05812 (EMPO). Public code: QingyangZhang/EMPO
(`trl/src/open_r1/rewards.py`), whose entropy threshold the all-singletons rule is.
Departures: none intended.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal

from mgrpo.methods.base import AlgorithmConfig, AlgorithmSpec, bind, preset, preset_field, reward

if TYPE_CHECKING:  # typing only: the reward's tensors
    from torch import Tensor

    from mgrpo.methods.inputs import RewardInputs

__all__ = ["EmpoConfig", "cluster_share_reward", "empo"]


@reward("cluster_share")
def cluster_share_reward(x: RewardInputs) -> Tensor:
    """The share of each train rollout's answer cluster among the prompt's M train rollouts."""
    # lazy, start-up: method modules load without torch (a config error imports none)
    import torch

    from mgrpo.core.intrinsic import cluster_share

    B, M = x.shape
    return torch.tensor(cluster_share(x.policy_answers, x.equivalent), dtype=torch.float32,
                        device=x.device).view(B, M)


@dataclass(frozen=True)
class EmpoConfig(AlgorithmConfig):
    """`algorithm.*` of preset empo (the shared options only)."""

    preset: Literal["empo"] = preset_field("empo")


@preset("empo", EmpoConfig)
def empo(cfg: EmpoConfig) -> AlgorithmSpec:
    """G policy rollouts train on the share of their answer cluster."""
    return cfg.spec(rewards=(bind("cluster_share"),))
