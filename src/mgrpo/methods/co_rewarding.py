"""Co-rewarding: a second view of the same question labels the policy, so the policy cannot
simply agree with itself. Paper: Zhang et al. 2025, arXiv 2508.00410 (Co-rewarding). Public
code: tmlr-group/Co-rewarding.

**co-rewarding-ii** (data-side co-rewarding's model-side twin): a slowly moving EMA teacher's
majority vote labels the policy's rollouts. The policy samples G rollouts per prompt, all of
which train; the teacher (the momentum model) samples N more (default N = G, one per policy
rollout), and only the teacher's rollouts vote:

    label_b = maj(teacher answers of prompt b)
    r_bi    = 1[a_bi == label_b]                         (the `vote` reward)
    teacher <- m_t teacher + (1 - m_t) policy            after every optimizer step
    m_t     = 1 - alpha_t,  alpha_t = alpha_end + 1/2 (alpha_start - alpha_end)(1 + cos(pi t / T))

over T = trainer.max_steps (`core.ema.cosine_momentum`), alpha = (0.01, 1e-5) by default.
Public code: `Co-rewarding-II`, the teacher update `ref.sliding_average`. Departures: the KL
term goes to the frozen initial model, as in every other preset here; their script takes it
to the teacher with verl's `low_var_kl` at 0.001 (`kl_to_teacher: true`, `kl_estimator:
low_var_kl`, `kl_coef: 0.001` reproduce it). No IQR filter.

**co-rewarding-i** (data-side): every question q has a rephrased twin q' (the column
`data.paraphrase_field`; the lab and arithmetic tasks make theirs, `data.arithmetic.
rewrite_expression`). The policy samples G rollouts for q and G for q', and each copy is
rewarded against the OTHER copy's majority vote (the `cross_vote` reward):

    r_i  = 1[a_i  == maj(a'_1 .. a'_G)]     (rollouts of q)
    r'_i = 1[a'_i == maj(a_1 .. a_G)]       (rollouts of q')

then the group advantage separately within each copy's G rollouts (their
`compute_advantage_contrastive`), and one loss over both copies. The step runs on 2B prompts
(the B questions, then their B twins). Public code: `Co-rewarding-I`, `CoRewardManager` in
`co_reward.py` and `compute_advantage_contrastive` in `ray_trainer.py`. Departures: one
token-mean loss over the rollouts of both copies, where their actor adds the two copies'
losses (`policy_loss_ori + policy_loss_aug`, each with its KL term): with equal token counts
our gradient is half of theirs (double optim.lr to match); answers are compared with the run's
equivalence (theirs: exact match of the boxed strings). With `trainer.updates_per_step` U > 1
the updates split the 2B prompts in order, so the originals and their twins can fall in
different updates.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal

from mgrpo.fields import check, doc
from mgrpo.methods.base import (
    AlgorithmConfig,
    AlgorithmSpec,
    MomentumSpec,
    TeacherConfig,
    bind,
    preset,
    preset_field,
    reward,
)

if TYPE_CHECKING:  # typing only: the reward's tensors
    from torch import Tensor

    from mgrpo.methods.inputs import RewardInputs

__all__ = ["CoRewardingIConfig", "CoRewardingIIConfig", "co_rewarding_i", "co_rewarding_ii",
           "cross_vote_reward"]


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


@reward("cross_vote", votes=True)
def cross_vote_reward(x: RewardInputs) -> Tensor:
    """1 where a train rollout's answer is equivalent to the pseudo-label of its prompt's
    rephrased TWIN (the other copy's vote), else 0; (B, M) on D (B = 2 x the questions)."""
    # lazy, start-up: method modules load without torch (a config error imports none)
    from mgrpo.core.voting import agreement

    labels = x.labels
    crossed = [labels[x.twin_of(b)] for b in range(x.shape[0])]
    return agreement(x.policy_answers, crossed, x.equivalent, x.device)


@dataclass(frozen=True)
class CoRewardingIConfig(AlgorithmConfig):
    """`algorithm.*` of preset co-rewarding-i (the shared options only; the twins come from
    `data.paraphrase_field`)."""

    preset: Literal["co-rewarding-i"] = preset_field("co-rewarding-i")


@preset("co-rewarding-i", CoRewardingIConfig)
def co_rewarding_i(cfg: CoRewardingIConfig) -> AlgorithmSpec:
    """G policy rollouts for each question and G for its twin, all train; each copy's vote
    labels the other copy."""
    return cfg.spec(rewards=(bind("cross_vote"),), paraphrases=True)
