"""Controls: rewards that carry no information about correctness, to calibrate the others.

- `random` (reward `random`): r_bi ~ Bernoulli(p), p = `random_p`, i.i.d. per rollout; prompt
  b's draws are seeded by (seed, step, global prompt index), so they do not depend on the
  number of ranks (`core.intrinsic.bernoulli_rewards`, `seeds.RANDOM_REWARD_STREAM`). With
  no signal in the reward, any accuracy a method gains over this control comes from its
  reward, not from the optimisation itself.

Paper: none (the sanity control). Public code: none. Departures: none. No vote, no labels.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal

from mgrpo.fields import check, doc
from mgrpo.methods.base import AlgorithmConfig, AlgorithmSpec, bind, preset, preset_field, reward
from mgrpo.seeds import RANDOM_REWARD_STREAM, step_seed

if TYPE_CHECKING:  # typing only: the reward's tensors
    from torch import Tensor

    from mgrpo.methods.inputs import RewardInputs

__all__ = ["RandomConfig", "random_control", "random_reward"]

RANDOM_P = 0.5  # the Bernoulli probability unless the preset says otherwise


@reward("random")
def random_reward(x: RewardInputs, *, p: float = RANDOM_P) -> Tensor:
    """Bernoulli(p) per train rollout, seeded by (seed, step, global prompt index); (B, M)."""
    # lazy, start-up: method modules load without torch (a config error imports none)
    import torch

    from mgrpo.core.intrinsic import bernoulli_rewards

    B, M = x.shape
    rows = [bernoulli_rewards((M,), p, step_seed(x.seed, x.step, RANDOM_REWARD_STREAM,
                                                 x.prompt_offset + b))
            for b in range(B)]
    return torch.stack(rows).to(x.device)


@dataclass(frozen=True)
class RandomConfig(AlgorithmConfig):
    """`algorithm.*` of preset random."""

    preset: Literal["random"] = preset_field("random")
    random_p: float = doc(RANDOM_P, "the Bernoulli reward probability, in [0, 1]")

    def __post_init__(self) -> None:
        super().__post_init__()
        check(0.0 <= self.random_p <= 1.0, "algorithm.random_p", "must be in [0, 1]")


@preset("random", RandomConfig)
def random_control(cfg: RandomConfig) -> AlgorithmSpec:
    """G policy rollouts train on coin flips."""
    return cfg.spec(rewards=(bind("random", p=cfg.random_p),))
