"""M-GRPO: momentum-anchored GRPO with an IQR entropy filter (this project's paper).

Per prompt, the policy samples M = G - N rollouts and the momentum model (an EMA of the
policy, `theta_k <- m theta_k + (1 - m) theta_q` after every optimizer step) samples N:

    H_g   = mean_t H_t of rollout g                       (g over the G pool, policy first)
    keep  = H >= q1 - k (q3 - q1)                         (IQR filter; k = None: all kept)
    label = maj({a_g : keep_g})                           (policy 0..M-1, then momentum)
    r_i   = 1[a_i == label],  i < M                       (the `vote` reward; momentum
                                                           rollouts vote, never train)

then GRPO advantages over the kept policy rollouts (docs/design.md §3). Defaults: N = G/4,
m = 0.99, k = 0.75 (paper Table 4).

Options beyond the paper (each off by default, the paper's step bit for bit):
`filter_scope` (the filter acts on the vote, the loss, or both), `policy_votes` (false: only
the N momentum rollouts vote), `momentum_vote_weight` (a momentum vote counts w times),
`kl_to_teacher` (the KL term to the momentum model instead of the initial one).

Paper: M-GRPO (this project; docs/methods.md). Public code: the authors' release never
enables the momentum rollouts; ours does (the departure).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from mgrpo.fields import check, doc, literal_names, one_of
from mgrpo.methods.base import (
    AlgorithmSpec,
    MomentumSpec,
    TeacherConfig,
    bind,
    preset,
    preset_field,
)

__all__ = ["FilterScope", "MGrpoConfig", "default_momentum_rollouts", "m_grpo"]

FilterScope = Literal["vote", "loss", "vote+loss"]


def default_momentum_rollouts(rollouts: int) -> int:
    """m-grpo's N when `algorithm.momentum_rollouts` is null: G // 4 (paper: N = G/4)."""
    return rollouts // 4


@dataclass(frozen=True)
class MGrpoConfig(TeacherConfig):
    """`algorithm.*` of preset m-grpo."""

    preset: Literal["m-grpo"] = preset_field("m-grpo")
    momentum: float = doc(0.99, "m of the EMA theta_k <- m theta_k + (1 - m) theta_q, in "
                          "[0, 1] (paper: 0.99)")
    iqr_k: float | None = doc(0.75, "k of the IQR entropy filter keep = H >= q1 - k (q3 - q1), "
                              ">= 0; null = off (paper: 0.75)")
    filter_scope: FilterScope = doc("vote+loss", "what the IQR filter removes rollouts from: "
                                    "vote | loss (the policy rollouts it drops leave the loss "
                                    "set but still vote) | vote+loss (paper: both)")
    policy_votes: bool = doc(True, "the policy's rollouts vote; false = they sample and train "
                             "but only the N momentum rollouts vote (needs N >= 1)")
    momentum_vote_weight: float = doc(1.0, "a momentum rollout's vote counts this many times, "
                                      "> 0 (1 = one vote each, the paper)")

    def __post_init__(self) -> None:
        super().__post_init__()
        n = self.teacher_rollouts()
        if self.momentum_rollouts is not None:
            check(0 <= n < self.rollouts, "algorithm.momentum_rollouts",
                  f"N must satisfy 0 <= N < G = {self.rollouts}, got {n}")
            check(self.rollouts - n >= 2, "algorithm.momentum_rollouts",
                  "G - N (policy rollouts) must be >= 2")
        else:
            check(n >= 1, "algorithm.rollouts",
                  f"m-grpo with G = {self.rollouts} gives N = G // 4 = {n} momentum rollouts (no "
                  f"momentum model); use G >= 4 or set algorithm.momentum_rollouts explicitly")
        check(self.policy_votes or n != 0, "algorithm.policy_votes",
              "false leaves only the momentum rollouts to vote, and algorithm.momentum_rollouts "
              "is 0")
        check(0.0 <= self.momentum <= 1.0, "algorithm.momentum", "must be in [0, 1]")
        check(self.iqr_k is None or self.iqr_k >= 0, "algorithm.iqr_k", "must be >= 0 or null")
        one_of(self.filter_scope, "algorithm.filter_scope", literal_names(FilterScope))
        check(self.momentum_vote_weight > 0, "algorithm.momentum_vote_weight", "must be > 0")

    def teacher_rollouts(self) -> int:
        """N: `momentum_rollouts`, or G // 4 when null."""
        if self.momentum_rollouts is None:
            return default_momentum_rollouts(self.rollouts)
        return self.momentum_rollouts


@preset("m-grpo", MGrpoConfig)
def m_grpo(cfg: MGrpoConfig) -> AlgorithmSpec:
    """M = G - N policy rollouts train; policy (unless `policy_votes` is off) and momentum
    rollouts vote over the IQR-kept pool; the reward is agreement with the vote."""
    n = cfg.teacher_rollouts()
    return cfg.spec(
        rewards=(bind("vote"),),
        policy_rollouts=cfg.rollouts - n,
        momentum_rollouts=n,
        iqr_k=cfg.iqr_k,
        filter_in_loss=cfg.filter_scope in ("loss", "vote+loss"),
        vote=cfg.vote_spec(policy_votes=cfg.policy_votes,
                           filter_in_vote=cfg.filter_scope in ("vote", "vote+loss"),
                           momentum_weight=cfg.momentum_vote_weight),
        momentum=MomentumSpec(m=cfg.momentum),
        kl_to_teacher=cfg.kl_to_teacher,
    )
