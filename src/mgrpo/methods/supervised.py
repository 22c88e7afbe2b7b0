"""Supervised GRPO: the ground truth is the reward (the upper bound of the label-free methods).

    r_bi = 1[a_bi == truth_b]          (no parsed answer -> 0)

Every training prompt needs an answer (`data.answer_field`); the run refuses a dataset
without one before the model loads.

Paper: Shao et al. 2024, "DeepSeekMath" (GRPO). Departures: none.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal

from mgrpo.methods.base import AlgorithmConfig, AlgorithmSpec, bind, preset, preset_field, reward

if TYPE_CHECKING:  # typing only: the reward's tensors
    from torch import Tensor

    from mgrpo.methods.inputs import RewardInputs

__all__ = ["GrpoConfig", "grpo", "truth_reward"]


@reward("truth", needs_truth=True)
def truth_reward(x: RewardInputs) -> Tensor:
    """1 where a train rollout's answer is equivalent to the ground truth; (B, M) on D."""
    # lazy, start-up: method modules load without torch (a config error imports none)
    from mgrpo.core.voting import agreement

    if any(a is None for a in x.truths):
        raise ValueError("the truth reward needs a ground-truth answer for every prompt")
    return agreement(x.policy_answers, x.truths, x.equivalent, x.device)


@dataclass(frozen=True)
class GrpoConfig(AlgorithmConfig):
    """`algorithm.*` of preset grpo (the shared options only)."""

    preset: Literal["grpo"] = preset_field("grpo")


@preset("grpo", GrpoConfig)
def grpo(cfg: GrpoConfig) -> AlgorithmSpec:
    """G policy rollouts train on agreement with the ground truth; no vote."""
    return cfg.spec(rewards=(bind("truth"),))
