"""Self-consistency: the majority vote of the policy's own samples is the pseudo-label (SRT, TTRL),
and the `vote` reward every voting method uses.

    label_b = maj(a_b1 .. a_bK)          over the prompt's voting rollouts (core/voting.py)
    r_bi    = 1[a_bi == label_b]         for the M train rollouts (no label -> 0)

- `srt`: the G policy rollouts train and vote. Shafayat et al. 2025, "Can Large Reasoning
  Models Self-Train?"; `algorithm.min_vote_share` is its consistency threshold (off by
  default).
- `ttrl`: G rollouts train, and `ttrl_vote_rollouts` (default 2G) policy samples vote: the
  first G plus V = voters - G vote-only ones. Zuo et al. 2025, "TTRL: Test-Time
  Reinforcement Learning": vote over 64, train on 32.

Public code: not checked for this page; the formulas are the papers'. Departures: none
intended; equivalent answers are clustered with the voting walk (core/voting.py).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal

from mgrpo.fields import check, doc
from mgrpo.methods.base import AlgorithmConfig, AlgorithmSpec, bind, preset, preset_field, reward

if TYPE_CHECKING:  # typing only: the reward's tensors
    from torch import Tensor

    from mgrpo.methods.inputs import RewardInputs

__all__ = ["SrtConfig", "TtrlConfig", "srt", "ttrl", "vote_reward"]


@reward("vote", votes=True)
def vote_reward(x: RewardInputs) -> Tensor:
    """1 where a train rollout's answer is equivalent to its prompt's pseudo-label, else 0
    (no label or no parsed answer -> 0); (B, M) fp32 on D."""
    # lazy, start-up: method modules load without torch (a config error imports none)
    from mgrpo.core.voting import agreement

    return agreement(x.policy_answers, x.labels, x.equivalent, x.device)


@dataclass(frozen=True)
class SrtConfig(AlgorithmConfig):
    """`algorithm.*` of preset srt (the shared options only)."""

    preset: Literal["srt"] = preset_field("srt")


@preset("srt", SrtConfig)
def srt(cfg: SrtConfig) -> AlgorithmSpec:
    """G policy rollouts train and vote; no momentum model, no filter."""
    return cfg.spec(rewards=(bind("vote"),))


@dataclass(frozen=True)
class TtrlConfig(AlgorithmConfig):
    """`algorithm.*` of preset ttrl."""

    preset: Literal["ttrl"] = preset_field("ttrl")
    ttrl_vote_rollouts: int | None = doc(
        None, "policy samples that vote, >= G (null = 2 G; TTRL: vote over 64, train on 32)")

    def __post_init__(self) -> None:
        super().__post_init__()
        check(self.ttrl_vote_rollouts is None or self.ttrl_vote_rollouts >= self.rollouts,
              "algorithm.ttrl_vote_rollouts", f"must be >= algorithm.rollouts = {self.rollouts}")


@preset("ttrl", TtrlConfig)
def ttrl(cfg: TtrlConfig) -> AlgorithmSpec:
    """G policy rollouts train; they and V = voters - G more policy samples vote."""
    voters = cfg.ttrl_vote_rollouts if cfg.ttrl_vote_rollouts is not None else 2 * cfg.rollouts
    return cfg.spec(rewards=(bind("vote"),), vote_only_rollouts=voters - cfg.rollouts)
