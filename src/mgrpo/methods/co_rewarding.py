"""Co-rewarding-II: a slowly moving EMA teacher's majority vote labels the policy's rollouts.

The policy samples G rollouts per prompt, all of which train; the teacher (the momentum
model) samples N more (default N = G, one per policy rollout), and only the teacher's
rollouts vote:

    label_b = maj(teacher answers of prompt b)
    r_bi    = 1[a_bi == label_b]                         (the `vote` reward)
    teacher <- m_t teacher + (1 - m_t) policy            after every optimizer step
    m_t     = 1 - alpha_t,  alpha_t = alpha_end + 1/2 (alpha_start - alpha_end)(1 + cos(pi t / T))

over T = trainer.max_steps (`core.ema.cosine_momentum`), alpha = (0.01, 1e-5) by default.

Paper: Zhang et al. 2025, arXiv 2508.00410 (Co-rewarding). Public code:
tmlr-group/Co-rewarding (`Co-rewarding-II`, the teacher update `ref.sliding_average`).

Departures: the KL term goes to the frozen initial model, as in every other preset here;
their script takes it to the teacher with verl's `low_var_kl` at 0.001 (`kl_to_teacher: true`,
`kl_estimator: low_var_kl`, `kl_coef: 0.001` reproduce it). No IQR filter.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from mgrpo.fields import check, doc
from mgrpo.methods.base import (
    AlgorithmSpec,
    MomentumSpec,
    TeacherConfig,
    bind,
    preset,
    preset_field,
)

__all__ = ["CoRewardingIIConfig", "co_rewarding_ii"]


@dataclass(frozen=True)
class CoRewardingIIConfig(TeacherConfig):
    """`algorithm.*` of preset co-rewarding-ii."""

    preset: Literal["co-rewarding-ii"] = preset_field("co-rewarding-ii")
    teacher_alpha: list[float] = doc(
        None, "[alpha_start, alpha_end] of the teacher's cosine EMA schedule m = 1 - alpha(t) "
        "over trainer.max_steps, each in [0, 1] (Co-rewarding-II's script: [0.01, 1e-5])",
        factory=lambda: [0.01, 1e-5])

    def __post_init__(self) -> None:
        super().__post_init__()
        check(self.teacher_rollouts() >= 1, "algorithm.momentum_rollouts",
              "co-rewarding-ii needs N >= 1 teacher rollouts (only they vote)")
        check(len(self.teacher_alpha) == 2 and all(0.0 <= a <= 1.0 for a in self.teacher_alpha),
              "algorithm.teacher_alpha", "must be [alpha_start, alpha_end], each in [0, 1]")

    def teacher_rollouts(self) -> int:
        """N: `momentum_rollouts`, or G when null."""
        return self.rollouts if self.momentum_rollouts is None else self.momentum_rollouts


@preset("co-rewarding-ii", CoRewardingIIConfig)
def co_rewarding_ii(cfg: CoRewardingIIConfig) -> AlgorithmSpec:
    """G policy rollouts train; N teacher rollouts are the only voters; the teacher's EMA
    follows the cosine schedule of `teacher_alpha`."""
    return cfg.spec(
        rewards=(bind("vote"),),
        momentum_rollouts=cfg.teacher_rollouts(),
        vote=cfg.vote_spec(policy_votes=False),
        momentum=MomentumSpec(schedule=(cfg.teacher_alpha[0], cfg.teacher_alpha[1])),
        kl_to_teacher=cfg.kl_to_teacher,
    )
