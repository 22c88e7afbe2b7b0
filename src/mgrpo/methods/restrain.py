"""RESTRAIN: rewards spread over the whole answer distribution, a penalty for prompts the
policy does not agree with itself on, and prompts weighted by that agreement.

Per prompt, over its G policy rollouts, `p_c` the share of answer cluster c (the unparsed
rollouts count in G), `kappa = max_c p_c` the prompt's consistency (core/consensus.py):

    r_i  = w_{c(i)},  w_c = p_c^s / sum_k p_k^s       (no answer -> 0; s = restrain_sharpness)
    A    = the group advantage of r (algorithm.advantage)
    A_i <- kappa A_i                 if kappa >= restrain_min_consistency   (prompt weight)
    A_i <- -restrain_penalty         otherwise, for every rollout of the prompt

Paper: Yu et al. 2025, arXiv 2510.02172 ("RESTRAIN: From Spurious Votes to Signals"). Public
code: none found (2026-12-07); implemented from the paper's description of its three parts
(pseudo-label weighting, negative rollout penalisation, prompt-level weighting).

Departures and choices (the paper's exact functions and constants could not be recovered):
the weighting function (the share raised to s = 2 and renormalised: s = 1 spreads the reward
by vote share, s -> inf is the majority vote), the consistency (the majority share), its
threshold (0.3), the penalty (the advantage -0.2 on every rollout of a low-consistency
prompt, applied after the group normalisation, since a constant reward would normalise to
0), and the prompt weight (kappa itself). The paper weights prompts offline from a frozen
reference model; here the weight comes from the current pool (no offline pass, and a prompt's
weight follows the policy as it trains). No vote: the clusters are the signal.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal

from mgrpo.fields import check, doc
from mgrpo.methods.base import AlgorithmConfig, AlgorithmSpec, bind, preset, preset_field, reward

if TYPE_CHECKING:  # typing only: the reward's tensors
    from torch import Tensor

    from mgrpo.methods.inputs import RewardInputs

__all__ = ["RestrainConfig", "restrain", "restrain_prompt_rule", "restrain_reward"]

SHARPNESS = 2.0  # s of the pseudo-label weights unless the preset says otherwise


def _pools(x: RewardInputs) -> list[list[str | None]]:
    """(B, M + V) the answers of each prompt's policy rollouts."""
    n = x.pool.policy_entropy.shape[1]
    return [row[:n] for row in x.pool.answers]


@reward("restrain")
def restrain_reward(x: RewardInputs, *, sharpness: float = SHARPNESS) -> Tensor:
    """RESTRAIN's weighted pseudo-label reward of each train rollout; (B, M) on D."""
    # lazy, start-up: method modules load without torch (a config error imports none)
    import torch

    from mgrpo.core.consensus import restrain_rewards

    rewards, _ = restrain_rewards(_pools(x), x.equivalent, sharpness, rewarded=x.shape[1])
    return torch.tensor(rewards, dtype=torch.float32, device=x.device)


def restrain_prompt_rule(x: RewardInputs, advantages: Tensor, in_loss: Tensor, *,
                         min_consistency: float, penalty: float) -> Tensor:
    """RESTRAIN's prompt-level rule on the (B, M) advantages (module docstring)."""
    # lazy, start-up: method modules load without torch (a config error imports none)
    import torch

    from mgrpo.core.consensus import restrain_advantages, restrain_rewards

    _, consistency = restrain_rewards(_pools(x), x.equivalent, SHARPNESS, rewarded=0)
    return restrain_advantages(advantages, in_loss, torch.tensor(consistency),
                               min_consistency=min_consistency, penalty=penalty)


@dataclass(frozen=True)
class RestrainConfig(AlgorithmConfig):
    """`algorithm.*` of preset restrain."""

    preset: Literal["restrain"] = preset_field("restrain")
    restrain_sharpness: float = doc(SHARPNESS, "s of the pseudo-label weights w_c = p_c^s / "
                                    "sum_k p_k^s, > 0 (1: by vote share; large: the majority "
                                    "vote); our choice, the paper's function is not recovered")
    restrain_min_consistency: float = doc(
        0.3, "kappa_min: a prompt whose majority share is below it gets the advantage "
        "-restrain_penalty on every rollout, in [0, 1] (our choice)")
    restrain_penalty: float = doc(0.2, "delta: that negative advantage, >= 0 (our choice)")

    def __post_init__(self) -> None:
        super().__post_init__()
        check(self.restrain_sharpness > 0, "algorithm.restrain_sharpness", "must be > 0")
        check(0.0 <= self.restrain_min_consistency <= 1.0, "algorithm.restrain_min_consistency",
              "must be in [0, 1]")
        check(self.restrain_penalty >= 0.0, "algorithm.restrain_penalty", "must be >= 0")


@preset("restrain", RestrainConfig)
def restrain(cfg: RestrainConfig) -> AlgorithmSpec:
    """G policy rollouts train on the weighted pseudo-labels; the prompt-level rule acts on
    their advantages."""
    return cfg.spec(
        rewards=(bind("restrain", sharpness=cfg.restrain_sharpness),),
        advantage_transform=functools.partial(
            restrain_prompt_rule, min_consistency=cfg.restrain_min_consistency,
            penalty=cfg.restrain_penalty))
