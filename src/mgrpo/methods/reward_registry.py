"""The reward registry: a reward is a function of the step's `RewardInputs` returning the
(B, M) rewards of the train rollouts, registered by name at its definition (`@reward`) and
bound with its method's parameters when the algorithm is resolved (`bind`).

Nothing here imports torch (the reward functions import it inside their bodies).
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from mgrpo.registry import Registry

if TYPE_CHECKING:
    from torch import Tensor

    from mgrpo.methods.inputs import RewardInputs

__all__ = ["REWARDS", "BoundReward", "Reward", "bind", "reward"]


@dataclass(frozen=True)
class Reward:
    """A `REWARDS` entry: the function and what the step prepares for it."""

    name: str
    fn: Callable[..., Tensor]  # fn(inputs, **params) -> (B, M)
    votes: bool  # it reads the vote's pseudo-label: the step runs the majority vote
    needs_truth: bool  # it reads the ground truth: every training prompt needs an answer

    def bind(self, weight: float = 1.0, **params: object) -> BoundReward:
        """This reward with `params` fixed (the method's options) and its mixing weight."""
        fn = functools.partial(self.fn, **params) if params else self.fn
        return BoundReward(self.name, fn, weight, self.votes, self.needs_truth)


@dataclass(frozen=True)
class BoundReward:
    """One reward term of a spec: a reward with its parameters bound, and its weight."""

    name: str  # the registry name, or the user function's spec
    fn: Callable[[RewardInputs], Tensor]  # (B, M) fp32 on D
    weight: float
    votes: bool
    needs_truth: bool


#: reward name -> `Reward`: the built-in rewards (registered in their method's module) and
#: the user's (`mgrpo.train.rewards.register_reward`).
REWARDS: Registry[Reward] = Registry("reward")


def reward(name: str, *, votes: bool = False, needs_truth: bool = False
           ) -> Callable[[Callable[..., Tensor]], Callable[..., Tensor]]:
    """Register the decorated `fn(inputs, **params)` as reward `name` (the function is
    returned unchanged). `votes`: the step must vote for it; `needs_truth`: it reads labels."""
    def add(fn: Callable[..., Tensor]) -> Callable[..., Tensor]:
        REWARDS.register(name, Reward(name, fn, votes, needs_truth))
        return fn

    return add


def bind(name: str, weight: float = 1.0, **params: object) -> BoundReward:
    """The built-in reward `name` with `params` bound (UnknownNameError lists the rewards)."""
    return REWARDS.get(name).bind(weight, **params)
