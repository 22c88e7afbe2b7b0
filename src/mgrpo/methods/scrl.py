"""SCRL: a positive label only under strict consensus, negative labels only for answers that
are both rare and uncertain.

Per prompt, over its M + V policy rollouts (V vote-only ones, `scrl_vote_rollouts`), with
`p_c` the share of answer cluster c (the unparsed rollouts count in n), `H_c` its mean
trajectory entropy and `Hbar` the prompt's (core/consensus.py):

    y+  = the largest cluster if p_1 >= tau_pos and (alone, or p_1 - p_2 > tau_marg)
    N-  = {c != y+ : p_c < tau_low and H_c >= Hbar}
    r_i = +1 (a_i in y+) | -1 (a_i in N-) | 0 (otherwise) | -1 (no answer)      (binary)

and, `scrl_mode: continuous`, `a+ p_c - lam (H_c - Hbar)` for y+, `-a- (tau_low - p_c) -
lam (H_c - Hbar)` for N-, `-lam (H_c - Hbar)` otherwise. H is the trajectory entropy of the
run (mean token entropy at the sampling temperature, docs/design.md §3).

Paper: Yan et al. 2026, arXiv 2603.19880. Public code: Jasper-Yan/SCRL
(`verl/verl/trainer/ppo/scrl_utils.py` `determine_pseudo_labels`,
`verl/verl/utils/reward_score/scrl_math/__init__.py` `reward_func`); the defaults are its
`ppo_trainer_scrl.yaml` (tau_pos 0.5, tau_marg 0.15, tau_low 0.15, binary, a+- 1, lam 0.1).

Departures: answers are grouped by the run's equivalence (the voting walk) where the public
code counts simplified answer strings and grades a rollout against y+ with math-verify; the
continuous positive reward is the code's `a+ p_c` (the docstring beside it writes `a+ (p_c -
tau_pos)`); the authors vote over 32 and train on 16, here over G (V = 0) unless
`scrl_vote_rollouts` is set (2 G reproduces theirs).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal

from mgrpo.fields import check, doc, literal_names, one_of
from mgrpo.methods.base import AlgorithmConfig, AlgorithmSpec, bind, preset, preset_field, reward

if TYPE_CHECKING:  # typing only: the reward's tensors
    from torch import Tensor

    from mgrpo.methods.inputs import RewardInputs

__all__ = ["ScrlConfig", "ScrlMode", "scrl", "scrl_reward"]

ScrlMode = Literal["binary", "continuous"]


@reward("scrl")
def scrl_reward(x: RewardInputs, *, tau_pos: float = 0.5, tau_marg: float = 0.15,
                tau_low: float = 0.15, mode: str = "binary", a_plus: float = 1.0,
                a_minus: float = 1.0, lam: float = 0.1) -> Tensor:
    """SCRL's reward of each train rollout over its prompt's M + V policy rollouts; (B, M)."""
    # lazy, start-up: method modules load without torch (a config error imports none)
    import torch

    from mgrpo.core.consensus import scrl_labels, scrl_rewards

    B, M = x.shape
    pool = x.pool
    n = pool.policy_entropy.shape[1]  # M + V
    entropy = pool.policy_entropy.float().cpu().tolist()  # (B, M + V)
    rows = []
    for b in range(B):
        labels = scrl_labels(pool.answers[b][:n], entropy[b], x.equivalent, tau_pos=tau_pos,
                             tau_marg=tau_marg, tau_low=tau_low)
        rows.append(scrl_rewards(labels, M, mode=mode, a_plus=a_plus, a_minus=a_minus,
                                 lam=lam, tau_low=tau_low))
    return torch.tensor(rows, dtype=torch.float32, device=x.device)


@dataclass(frozen=True)
class ScrlConfig(AlgorithmConfig):
    """`algorithm.*` of preset scrl."""

    preset: Literal["scrl"] = preset_field("scrl")
    scrl_tau_pos: float = doc(0.5, "tau_pos: the largest answer cluster's share must reach it "
                              "for a positive label, in [0, 1] (SCRL's default)")
    scrl_tau_marg: float = doc(0.15, "tau_marg: and lead the second cluster by more than it, "
                               "in [0, 1] (SCRL's default)")
    scrl_tau_low: float = doc(0.15, "tau_low: a cluster below this share whose mean entropy "
                              "is at least the prompt's is a negative label, in [0, 1] (SCRL's "
                              "default)")
    scrl_mode: ScrlMode = doc("binary", "binary (+1 positive, -1 negative, 0 otherwise) | "
                              "continuous (shares and an entropy term, docs/methods.md)")
    scrl_a_plus: float = doc(1.0, "a+: scale of the continuous positive reward, >= 0")
    scrl_a_minus: float = doc(1.0, "a-: scale of the continuous negative reward, >= 0")
    scrl_entropy_weight: float = doc(0.1, "lambda: weight of -(H_c - Hbar) in the continuous "
                                     "reward, >= 0")
    scrl_vote_rollouts: int | None = doc(
        None, "policy samples per prompt that label, >= G; the first G train (null = G; "
        "SCRL's script: 32 label, 16 train)")

    def __post_init__(self) -> None:
        super().__post_init__()
        for key in ("scrl_tau_pos", "scrl_tau_marg", "scrl_tau_low"):
            check(0.0 <= getattr(self, key) <= 1.0, f"algorithm.{key}", "must be in [0, 1]")
        one_of(self.scrl_mode, "algorithm.scrl_mode", literal_names(ScrlMode))
        for key in ("scrl_a_plus", "scrl_a_minus", "scrl_entropy_weight"):
            check(getattr(self, key) >= 0.0, f"algorithm.{key}", "must be >= 0")
        check(self.scrl_vote_rollouts is None or self.scrl_vote_rollouts >= self.rollouts,
              "algorithm.scrl_vote_rollouts", f"must be >= algorithm.rollouts = {self.rollouts}")


@preset("scrl", ScrlConfig)
def scrl(cfg: ScrlConfig) -> AlgorithmSpec:
    """G policy rollouts train; they and V label-only ones give the positive and negative
    labels; SCRL's reward."""
    voters = cfg.scrl_vote_rollouts if cfg.scrl_vote_rollouts is not None else cfg.rollouts
    return cfg.spec(
        rewards=(bind("scrl", tau_pos=cfg.scrl_tau_pos, tau_marg=cfg.scrl_tau_marg,
                      tau_low=cfg.scrl_tau_low, mode=cfg.scrl_mode, a_plus=cfg.scrl_a_plus,
                      a_minus=cfg.scrl_a_minus, lam=cfg.scrl_entropy_weight),),
        vote_only_rollouts=voters - cfg.rollouts)
