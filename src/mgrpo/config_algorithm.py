"""The `algorithm` section of the config: the preset and its knobs, the reward (built-in or a
user function), the vote options and the stabilisers (docs/methods.md). Re-exported by
`mgrpo.config`; the other sections are in `config_sections`.
"""

from __future__ import annotations

from dataclasses import dataclass

from mgrpo.config_sections import ConfigError, _check, _doc, _one_of

__all__ = ["AlgorithmConfig", "RewardTerm", "default_momentum_rollouts"]


def default_momentum_rollouts(rollouts: int) -> int:
    """m-grpo's N when `algorithm.momentum_rollouts` is null: G // 4 (paper: N = G/4)."""
    return rollouts // 4


@dataclass(frozen=True)
class RewardTerm:
    """One term of `algorithm.rewards`: a reward (as `algorithm.reward`) and its weight."""

    fn: str = _doc("vote", "a name in `mgrpo.train.rewards.REWARDS` or 'file.py:function' / "
                   "'package.module:function'")
    weight: float = _doc(1.0, "the term's weight (any finite number)")


@dataclass(frozen=True)
class AlgorithmConfig:
    """Which algorithm and its knobs (docs/design.md §3); `mgrpo.train.presets` resolves
    them into an `AlgorithmSpec`. Presets other than m-grpo ignore N and the IQR filter."""

    preset: str = _doc("m-grpo", "the algorithm: a name in `mgrpo.train.presets.PRESETS` "
                       "(the README's preset table; docs/methods.md)")
    rollouts: int = _doc(32, "G, rollouts per prompt, >= 2 (paper Table 4: 32)")
    momentum_rollouts: int | None = _doc(
        None, "N, momentum-model rollouts per prompt (m-grpo), 0 <= N < G with G - N >= 2; "
        "null = G // 4 (paper: N = G/4 = 8); the policy samples M = G - N")
    momentum: float = _doc(0.99, "m of the EMA theta_k <- m theta_k + (1 - m) theta_q, in "
                           "[0, 1] (paper: 0.99)")
    iqr_k: float | None = _doc(0.75, "k of the IQR entropy filter keep = H >= q1 - k (q3 - q1), "
                               ">= 0; null = off (paper: 0.75)")
    filter_scope: str = _doc("vote+loss", "what the IQR filter removes rollouts from: vote | "
                             "loss (the policy rollouts it drops leave the loss set but still "
                             "vote) | vote+loss (paper: both)")
    policy_votes: bool = _doc(True, "m-grpo: the policy's rollouts vote; false = they sample and "
                              "train but only the N momentum rollouts vote (needs N >= 1; "
                              "co-rewarding-ii's policy never votes)")
    min_vote_share: float = _doc(0.0, "a vote whose winner has a smaller share gives no label, "
                                 "in [0, 1] (SRT's consistency threshold; 0 = off)")
    ttrl_vote_rollouts: int | None = _doc(
        None, "TTRL: policy samples that vote, >= G (null = 2 G; TTRL: vote over 64, train on 32)")
    advantage: str = _doc("grpo", "group advantage estimator: a name in "
                          "`mgrpo.core.advantages.ADVANTAGE_ESTIMATORS` (grpo | rloo | dr_grpo)")
    loss_agg: str = _doc("token-mean", "loss aggregation: a name in "
                         "`mgrpo.core.losses.LOSS_AGGREGATIONS` (token-mean as in verl; "
                         "seq-mean-token-mean: GRPO paper; seq-mean-token-sum-norm: Dr. GRPO)")
    clip: float = _doc(0.2, "PPO clip range epsilon, in (0, 1) (paper Table 4: 0.2)")
    kl_coef: float = _doc(0.005, "beta of the k3 KL to the frozen initial model, >= 0; 0 = no "
                          "reference model (paper Table 4: 0.005)")
    kl_estimator: str = _doc("k3", "the per-token KL estimate: a name in "
                             "`mgrpo.core.losses.KL_ESTIMATORS` (k3: exp(d) - d - 1 with d = "
                             "ref - logp, unclamped; low_var_kl: verl's, the same k3 with d "
                             "clamped to [-20, 20] and the value to [-10, 10])")
    reward: str | None = _doc(
        None, "the reward: a name in `mgrpo.train.rewards.REWARDS` (built-in or registered with "
        "`register_reward`), or a user function 'path/to/file.py:function' / "
        "'package.module:function' (null = the preset's reward)")
    rewards: list[RewardTerm] | None = _doc(
        None, "several rewards mixed with weights: [{fn: <reward>, weight: <number>}, ...] "
        "(fn as in algorithm.reward); exclusive with algorithm.reward (null = one reward)")
    reward_norm: str = _doc("sum", "how algorithm.rewards mix: sum (weighted sum, then the "
                            "advantage) | per-reward (each normalised within its group first, "
                            "GDPO-style)")
    momentum_vote_weight: float = _doc(1.0, "a momentum rollout's vote counts this many times, "
                                       "> 0 (1 = one vote each, the paper)")
    vote_ties: str = _doc("policy-first", "who wins a tied vote: policy-first (the cluster "
                          "opened first in pool order, the paper) | momentum-first | random "
                          "(seeded by seed, step and prompt)")
    clip_low: float | None = _doc(None, "lower PPO clip epsilon (ratio >= 1 - clip_low), in "
                                  "[0, 1) (null = algorithm.clip)")
    clip_high: float | None = _doc(None, "upper PPO clip epsilon (ratio <= 1 + clip_high), "
                                   ">= 0; DAPO's clip-higher uses 0.28 (null = algorithm.clip)")
    entropy_coef: float = _doc(0.0, "static entropy bonus c: loss -= c * token entropy, >= 0 "
                               "(0 = off)")
    dynamic_sampling: str = _doc("off", "DAPO dynamic sampling: off | filter (prompts whose "
                                 "train rollouts all get the same reward leave the loss and "
                                 "its normaliser)")
    overlong_mask: bool = _doc(False, "truncated rollouts (stopped by max_new_tokens) leave "
                               "the loss")
    overlong_cache: int | None = _doc(
        None, "DAPO soft overlong penalty: L_cache tokens before generation.max_new_tokens "
        "over which a linear penalty falls from 0 to -1, added to the reward, >= 1 (null = off)")
    random_p: float = _doc(0.5, "preset random: the Bernoulli reward probability, in [0, 1]")
    rent_tokens: int = _doc(16, "preset rent: the last response tokens whose entropy is the "
                            "reward, >= 1")
    kl_to_teacher: bool = _doc(False, "the k3 KL term goes to the momentum model (co-rewarding-ii's "
                               "teacher) instead of the frozen initial model; needs N > 0, "
                               "full weights and kl_coef > 0")
    rollout_correction: str = _doc(
        "off", "truncated importance sampling against the rollout engine's own log-probs "
        "(TRL's vllm_importance_sampling_correction, verl's rollout_correction): off | token "
        "(w_t = min(exp(logp_old_t - logp_sampler_t), cap) per token) | sequence (one w = "
        "min(exp(sum_t (logp_old_t - logp_sampler_t)), cap) per rollout); the policy-gradient "
        "term of each token is multiplied by w (core/correction.py; docs/engines.md: bf16 GPU "
        "runs)")
    rollout_correction_cap: float = _doc(2.0, "the truncation threshold C of "
                                         "algorithm.rollout_correction, >= 1 (verl's default 2)")
    teacher_alpha: list[float] = _doc(
        None, "preset co-rewarding-ii: [alpha_start, alpha_end] of the teacher's cosine EMA "
        "schedule m = 1 - alpha(t) over trainer.max_steps (Co-rewarding-II's script: "
        "[0.01, 1e-5])", factory=lambda: [0.01, 1e-5])

    def __post_init__(self) -> None:
        # lazy, start-up: the registry imports torch (importing the config stays light)
        from mgrpo.core.advantages import ADVANTAGE_ESTIMATORS

        # lazy, start-up: the registry imports torch (importing the config stays light)
        from mgrpo.core.losses import KL_ESTIMATORS, LOSS_AGGREGATIONS

        # lazy, cycle: the presets registry imports this module
        from mgrpo.train.presets import PRESETS

        _one_of(self.preset, "algorithm.preset", list(PRESETS))
        _check(self.rollouts >= 2, "algorithm.rollouts", f"G must be >= 2, got {self.rollouts}")
        if self.momentum_rollouts is not None:
            _check(
                0 <= self.momentum_rollouts < self.rollouts,
                "algorithm.momentum_rollouts",
                f"N must satisfy 0 <= N < G = {self.rollouts}, got {self.momentum_rollouts}",
            )
            _check(
                self.rollouts - self.momentum_rollouts >= 2,
                "algorithm.momentum_rollouts",
                "G - N (policy rollouts) must be >= 2",
            )
        _check(
            self.preset != "m-grpo" or self.momentum_rollouts is not None
            or default_momentum_rollouts(self.rollouts) >= 1,
            "algorithm.rollouts",
            f"m-grpo with G = {self.rollouts} gives N = G // 4 = "
            f"{default_momentum_rollouts(self.rollouts)} momentum rollouts (no momentum "
            f"model); use G >= 4 or set algorithm.momentum_rollouts explicitly",
        )
        _check(self.policy_votes or self.momentum_rollouts != 0, "algorithm.policy_votes",
               "false leaves only the momentum rollouts to vote, and algorithm.momentum_rollouts "
               "is 0")
        _check(0.0 <= self.momentum <= 1.0, "algorithm.momentum", "must be in [0, 1]")
        _check(self.iqr_k is None or self.iqr_k >= 0, "algorithm.iqr_k", "must be >= 0 or null")
        _one_of(self.filter_scope, "algorithm.filter_scope", ["vote", "loss", "vote+loss"])
        _check(0.0 <= self.min_vote_share <= 1.0, "algorithm.min_vote_share", "must be in [0, 1]")
        if self.ttrl_vote_rollouts is not None:
            _check(
                self.ttrl_vote_rollouts >= self.rollouts,
                "algorithm.ttrl_vote_rollouts",
                f"must be >= algorithm.rollouts = {self.rollouts}",
            )
        _one_of(self.advantage, "algorithm.advantage", list(ADVANTAGE_ESTIMATORS))
        _one_of(self.loss_agg, "algorithm.loss_agg", list(LOSS_AGGREGATIONS))
        _check(0.0 < self.clip < 1.0, "algorithm.clip", "must be in (0, 1)")
        _check(self.kl_coef >= 0.0, "algorithm.kl_coef", "must be >= 0")
        _one_of(self.kl_estimator, "algorithm.kl_estimator", list(KL_ESTIMATORS))
        self._check_workbench()

    def _check_workbench(self) -> None:
        """The reward, vote and stabiliser options (all off by default)."""
        # lazy, start-up and cycle: the registries import torch and the training records
        from mgrpo.core.voting import VOTE_TIES
        from mgrpo.train.rewards import check_reward_name
        from mgrpo.train.user_rewards import REWARD_NORMS

        _check(self.reward is None or self.rewards is None, "algorithm.rewards",
               "set algorithm.reward or algorithm.rewards, not both")
        if self.reward is not None:
            check_reward_name(self.reward, "algorithm.reward", ConfigError)
        if self.rewards is not None:
            _check(len(self.rewards) >= 1, "algorithm.rewards", "must list at least one reward")
            for i, term in enumerate(self.rewards):
                check_reward_name(term.fn, f"algorithm.rewards[{i}].fn", ConfigError)
        _one_of(self.reward_norm, "algorithm.reward_norm", list(REWARD_NORMS))
        _check(self.momentum_vote_weight > 0, "algorithm.momentum_vote_weight", "must be > 0")
        _one_of(self.vote_ties, "algorithm.vote_ties", list(VOTE_TIES))
        _check(self.clip_low is None or 0.0 <= self.clip_low < 1.0, "algorithm.clip_low",
               "must be in [0, 1) or null")
        _check(self.clip_high is None or self.clip_high >= 0.0, "algorithm.clip_high",
               "must be >= 0 or null")
        _check(self.entropy_coef >= 0.0, "algorithm.entropy_coef", "must be >= 0")
        _one_of(self.dynamic_sampling, "algorithm.dynamic_sampling", ["off", "filter"])
        _check(self.overlong_cache is None or self.overlong_cache >= 1, "algorithm.overlong_cache",
               "must be >= 1 or null")
        _check(0.0 <= self.random_p <= 1.0, "algorithm.random_p", "must be in [0, 1]")
        _check(self.rent_tokens >= 1, "algorithm.rent_tokens", "must be >= 1")
        _check(not self.kl_to_teacher or self.kl_coef > 0, "algorithm.kl_to_teacher",
               "needs algorithm.kl_coef > 0 (the KL term it redirects)")
        _one_of(self.rollout_correction, "algorithm.rollout_correction",
                ["off", "token", "sequence"])
        _check(self.rollout_correction_cap >= 1.0, "algorithm.rollout_correction_cap",
               "must be >= 1 (weights are truncated at it)")
        _check(len(self.teacher_alpha) == 2 and all(0.0 <= a <= 1.0 for a in self.teacher_alpha),
               "algorithm.teacher_alpha", "must be [alpha_start, alpha_end], each in [0, 1]")
