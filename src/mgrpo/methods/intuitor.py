"""Intuitor: the policy's self-certainty is the reward (no vote, no labels).

    self_certainty(o) = mean_t KL(U || p_t) = mean_t [ -log V - (1/V) sum_j log p_t(j) ]

over the response tokens t of rollout o, with p_t = softmax(logits_t / T) under the policy
that sampled it (V the vocabulary size); computed by teacher forcing in row chunks with the
LM head applied in token chunks (`rollout.scoring.self_certainty`), so the full (R, T, V)
logits never exist at once. No gradient flows through the reward.

Paper: Zhao et al. 2025, "Learning to Reason without External Rewards". Public code: not
checked for this page. Departures: none intended.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal

from mgrpo.methods.base import AlgorithmConfig, AlgorithmSpec, bind, preset, preset_field, reward

if TYPE_CHECKING:  # typing only: the reward's tensors
    from torch import Tensor

    from mgrpo.methods.inputs import RewardInputs

__all__ = ["IntuitorConfig", "intuitor", "self_certainty_reward"]


@reward("self_certainty")
def self_certainty_reward(x: RewardInputs) -> Tensor:
    """Self-certainty of each train rollout under the policy that sampled it; (B, M) on D."""
    # lazy, start-up: method modules load without torch (a config error imports none)
    from mgrpo.rollout.scoring import self_certainty

    B, M = x.shape
    prompts = [x.prompt_ids[i] for i in x.train.prompt_index.tolist()]
    return self_certainty(x.sampler, prompts, x.train.response_ids, x.train.response_mask,
                          x.temperature).to(x.device).view(B, M)


@dataclass(frozen=True)
class IntuitorConfig(AlgorithmConfig):
    """`algorithm.*` of preset intuitor (the shared options only)."""

    preset: Literal["intuitor"] = preset_field("intuitor")


@preset("intuitor", IntuitorConfig)
def intuitor(cfg: IntuitorConfig) -> AlgorithmSpec:
    """G policy rollouts train on their self-certainty."""
    return cfg.spec(rewards=(bind("self_certainty"),))
