"""What a method is: its config type, the spec the step reads, its rewards, and their registries.

A method family is one module of `mgrpo.methods` (`m_grpo`, `co_rewarding`, ...). It holds:

- its **config type**: a subclass of `AlgorithmConfig` (the options every preset reads) whose
  `preset` field is the discriminator (`Literal["m-grpo"]`) and whose own fields are the
  options only that preset reads, each declared once with `doc(...)` and checked in
  `__post_init__` (prime-rl's pattern: one type per algorithm, chosen by its name);
- its **spec**: a function `config -> AlgorithmSpec`, registered with `@preset(name, Config)`,
  that says how many rollouts each model samples, who votes, whether the IQR filter runs,
  the momentum schedule, and its reward terms with their parameters bound (`bind`);
- its **reward(s)**, each a function `(RewardInputs, **params) -> (B, M)` registered with
  `@reward(name, votes=..., needs_truth=...)`;
- a docstring with the formula, the paper, the public code and every departure.

`step.py` reads only the `AlgorithmSpec`, never a preset name or a config. Method modules
import nothing heavy at module level (tensor code is imported inside the reward functions),
so building a config, and failing to, never imports torch. Registries: `PRESETS`, `REWARDS`
(`mgrpo.registry`).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field, fields
from typing import TYPE_CHECKING, Any, Literal

from mgrpo.fields import DOC, ConfigError, check, doc, literal_names, one_of
from mgrpo.methods.reward_registry import REWARDS, BoundReward, Reward, bind, reward
from mgrpo.registry import Registry, UnknownNameError
from mgrpo.user_functions import is_user_spec

if TYPE_CHECKING:  # typing only: the reward functions' tensors (imported where they run)
    from torch import Tensor

    from mgrpo.methods.inputs import RewardInputs

__all__ = [
    "PRESETS",
    "REWARDS",
    "PRESET_DEFAULT",
    "AdvantageName",
    "AdvantageTransform",
    "AlgorithmConfig",
    "AlgorithmSpec",
    "BoundReward",
    "KLEstimatorName",
    "LossAggregationName",
    "LossSpec",
    "PolicyLossName",
    "RatioLevelName",
    "MomentumSpec",
    "Preset",
    "Reward",
    "RewardNormName",
    "RewardTerm",
    "ShapingSpec",
    "TeacherConfig",
    "VoteSpec",
    "VoteTieName",
    "bind",
    "preset",
    "preset_default",
    "preset_field",
    "reward",
]

# Names of the variants that live in torch-side registries; a test checks each against its
# registry (core.advantages, core.losses, core.voting, train.rewards).
AdvantageName = Literal["grpo", "rloo", "dr_grpo"]
LossAggregationName = Literal["token-mean", "seq-mean-token-mean", "seq-mean-token-sum-norm"]
KLEstimatorName = Literal["k3", "low_var_kl"]
VoteTieName = Literal["policy-first", "momentum-first", "random"]
RewardNormName = Literal["sum", "per-reward"]
DynamicSamplingName = Literal["off", "filter", "resample"]
RolloutCorrectionName = Literal["off", "token", "sequence"]
RatioLevelName = Literal["token", "sequence"]  # core.losses.RATIO_LEVELS
PolicyLossName = Literal["ppo", "cispo"]  # core.losses.POLICY_LOSSES


# ------------------------------------------------------------------------------ the config


@dataclass(frozen=True)
class RewardTerm:
    """One term of `algorithm.rewards`: a reward (as `algorithm.reward`) and its weight."""

    fn: str = doc("vote", "a reward name (`mgrpo.methods.REWARDS`, built in or registered with "
                  "`register_reward`) or a user function 'file.py:function' / "
                  "'package.module:function'")
    weight: float = doc(1.0, "the term's weight (any finite number)")


def preset_field(name: str) -> str:
    """The discriminator field of a method's config type: `preset: Literal[name]`."""
    return doc(name, f"the algorithm: a name in `mgrpo.methods.PRESETS` (the README's preset "
                     f"table; docs/methods.md); this type configures `{name}`")


#: the metadata key marking a shared option re-declared with a preset's own default
PRESET_DEFAULT = "preset_default"


def preset_default(option: str, value: object, source: str) -> Any:
    """A shared option (a field of `AlgorithmConfig`) with another default in one method's
    config type: the option keeps its one description, and `source` says where this default
    comes from (EVOL-RL's script runs with an entropy bonus: `entropy_coef: float =
    preset_default("entropy_coef", 0.003, "EVOL-RL's script")`). A value the recipe sets
    wins as for any option; `docs/config.md` lists the changed defaults under the preset."""
    shared = {f.name: f for f in fields(AlgorithmConfig)}
    if option not in shared:
        raise ValueError(f"preset_default: {option!r} is not an option every preset reads")
    return field(default=value, metadata={DOC: shared[option].metadata[DOC],
                                          PRESET_DEFAULT: source})


@dataclass(frozen=True)
class AlgorithmConfig:
    """The `algorithm` section: the options every preset reads (docs/design.md §3).

    A method's config type subclasses it with its own options and its `preset` literal;
    `mgrpo.config` builds the type that `algorithm.preset` names. The vote options apply
    whenever the step votes (a vote reward or a user reward); `mgrpo.train.algorithm` refuses
    them when it does not."""

    preset: str = doc("m-grpo", "the algorithm: a name in `mgrpo.methods.PRESETS` (the "
                      "README's preset table; docs/methods.md); it chooses the config type")
    rollouts: int = doc(32, "G, rollouts per prompt, >= 2 (paper Table 4: 32)")
    reward: str | None = doc(
        None, "replaces the preset's reward: a name in `mgrpo.methods.REWARDS` (built in or "
        "registered with `register_reward`), or a user function 'path/to/file.py:function' / "
        "'package.module:function' (null = the preset's reward)")
    rewards: list[RewardTerm] | None = doc(
        None, "several rewards mixed with weights: [{fn: <reward>, weight: <number>}, ...] "
        "(fn as in algorithm.reward); exclusive with algorithm.reward (null = one reward)")
    reward_norm: RewardNormName = doc(
        "sum", "how algorithm.rewards mix: sum (weighted sum, then the advantage) | per-reward "
        "(each normalised within its group first, GDPO-style)")
    min_vote_share: float = doc(0.0, "a vote whose winner has a smaller share gives no label, "
                                "in [0, 1] (SRT's consistency threshold; 0 = off); read when "
                                "the step votes")
    vote_ties: VoteTieName = doc("policy-first", "who wins a tied vote: policy-first (the "
                                 "cluster opened first in pool order, the paper) | "
                                 "momentum-first | random (seeded by seed, step and prompt); "
                                 "read when the step votes")
    advantage: AdvantageName = doc("grpo", "group advantage estimator: grpo | rloo | dr_grpo "
                                   "(`mgrpo.core.advantages.ADVANTAGE_ESTIMATORS`)")
    loss_agg: LossAggregationName = doc(
        "token-mean", "loss aggregation (`mgrpo.core.losses.LOSS_AGGREGATIONS`): token-mean as "
        "in verl | seq-mean-token-mean (GRPO paper) | seq-mean-token-sum-norm (Dr. GRPO)")
    clip: float = doc(0.2, "PPO clip range epsilon, in (0, 1) (paper Table 4: 0.2)")
    clip_low: float | None = doc(None, "lower PPO clip epsilon (ratio >= 1 - clip_low), in "
                                 "[0, 1]; 1 = no lower bound (null = algorithm.clip)")
    clip_high: float | None = doc(None, "upper PPO clip epsilon (ratio <= 1 + clip_high), >= 0; "
                                  "DAPO's clip-higher uses 0.28 (null = algorithm.clip)")
    kl_coef: float = doc(0.005, "beta of the KL term, >= 0; 0 = no reference model (paper "
                         "Table 4: 0.005)")
    kl_estimator: KLEstimatorName = doc(
        "k3", "the per-token KL estimate (`mgrpo.core.losses.KL_ESTIMATORS`): k3 (exp(d) - d - "
        "1 with d = ref - logp, unclamped) | low_var_kl (verl's: the same k3 with d clamped to "
        "[-20, 20] and the value to [-10, 10])")
    entropy_coef: float = doc(0.0, "static entropy bonus c: loss -= c * token entropy, >= 0 "
                              "(0 = off)")
    policy_loss: PolicyLossName = doc(
        "ppo", "surrogate (`mgrpo.core.losses.POLICY_LOSSES`): ppo (-min(r A, clip(r) A)) | "
        "cispo (MiniMax-M1: -sg[clip(r, 1 - clip_low, 1 + clip_high)] A logp; verl, TRL cispo)")
    ratio_level: RatioLevelName = doc(
        "token", "importance ratio r: token | sequence (GSPO: r = exp(mean_t log(pi_t / "
        "pi_old_t)) per rollout, clipped once per sequence; TRL's importance_sampling_level, "
        "verl's gspo, which pairs it with loss_agg seq-mean-token-mean)")
    top_entropy_quantile: float = doc(
        1.0, "rho in (0, 1]: only tokens with entropy >= the (1 - rho) quantile of the "
        "update's loss tokens keep their pg term and entropy bonus (TRL's "
        "top_entropy_quantile; KL and normaliser keep every token; 1 = off)")
    epochs: int = doc(
        1, "mu >= 1 passes over each step's rollouts (TRL num_iterations, verl ppo_epochs): "
        "mu x trainer.updates_per_step optimizer steps and EMA updates per step, all against "
        "the logp_old from before the first")
    dynamic_sampling: DynamicSamplingName = doc(
        "off", "DAPO dynamic sampling: off | filter (prompts whose train rollouts all get the "
        "same reward leave the loss and its normaliser) | resample (their groups are "
        "generated again, up to algorithm.resample_budget per step; the rest filtered)")
    resample_budget: int | None = doc(
        None, "dynamic_sampling resample: most groups generated again per step, over all "
        "processes, >= 1 (null = trainer.prompts_per_step)")
    overlong_mask: bool = doc(False, "truncated rollouts (stopped by max_new_tokens) leave the "
                              "loss")
    overlong_cache: int | None = doc(
        None, "DAPO soft overlong penalty: L_cache tokens before generation.max_new_tokens over "
        "which a linear penalty falls from 0 to -1, added to the reward, >= 1 (null = off)")
    rollout_correction: RolloutCorrectionName = doc(
        "off", "truncated importance sampling against the rollout engine's own log-probs "
        "(TRL's vllm_importance_sampling_correction, verl's rollout_correction): off | token "
        "(w_t = min(exp(logp_old_t - logp_sampler_t), cap) per token) | sequence (one w = "
        "min(exp(sum_t (logp_old_t - logp_sampler_t)), cap) per rollout); the policy-gradient "
        "term of each token is multiplied by w (core/correction.py; docs/engines.md: bf16 GPU "
        "runs)")
    rollout_correction_cap: float = doc(2.0, "the truncation threshold C of "
                                        "algorithm.rollout_correction, >= 1 (verl's default 2)")

    #: options read only when the step votes (`mgrpo.train.algorithm` refuses them otherwise)
    VOTE_OPTIONS = ("min_vote_share", "vote_ties")

    def __post_init__(self) -> None:
        try:
            entry = PRESETS.get(self.preset)
        except UnknownNameError as exc:
            raise ConfigError(f"algorithm.preset: {exc}") from None
        check(type(self) is entry.config, "algorithm.preset",
              f"preset {self.preset} is configured by {entry.config.__name__}, not "
              f"{type(self).__name__} (build it with mgrpo.config.algorithm_config)")
        check(self.rollouts >= 2, "algorithm.rollouts", f"G must be >= 2, got {self.rollouts}")
        check(self.reward is None or self.rewards is None, "algorithm.rewards",
              "set algorithm.reward or algorithm.rewards, not both")
        if self.reward is not None:
            _check_reward_name(self.reward, "algorithm.reward")
        if self.rewards is not None:
            check(len(self.rewards) >= 1, "algorithm.rewards", "must list at least one reward")
            for i, term in enumerate(self.rewards):
                _check_reward_name(term.fn, f"algorithm.rewards[{i}].fn")
        one_of(self.reward_norm, "algorithm.reward_norm", literal_names(RewardNormName))
        check(0.0 <= self.min_vote_share <= 1.0, "algorithm.min_vote_share", "must be in [0, 1]")
        one_of(self.vote_ties, "algorithm.vote_ties", literal_names(VoteTieName))
        one_of(self.advantage, "algorithm.advantage", literal_names(AdvantageName))
        one_of(self.loss_agg, "algorithm.loss_agg", literal_names(LossAggregationName))
        check(0.0 < self.clip < 1.0, "algorithm.clip", "must be in (0, 1)")
        check(self.clip_low is None or 0.0 <= self.clip_low <= 1.0, "algorithm.clip_low",
              "must be in [0, 1] or null")
        check(self.clip_high is None or self.clip_high >= 0.0, "algorithm.clip_high",
              "must be >= 0 or null")
        check(self.kl_coef >= 0.0, "algorithm.kl_coef", "must be >= 0")
        one_of(self.kl_estimator, "algorithm.kl_estimator", literal_names(KLEstimatorName))
        check(self.entropy_coef >= 0.0, "algorithm.entropy_coef", "must be >= 0")
        one_of(self.policy_loss, "algorithm.policy_loss", literal_names(PolicyLossName))
        one_of(self.ratio_level, "algorithm.ratio_level", literal_names(RatioLevelName))
        check(0.0 < self.top_entropy_quantile <= 1.0, "algorithm.top_entropy_quantile",
              f"must be in (0, 1] (1 = off), got {self.top_entropy_quantile!r}")
        check(self.epochs >= 1, "algorithm.epochs",
              f"must be an integer >= 1, got {self.epochs!r}")
        one_of(self.dynamic_sampling, "algorithm.dynamic_sampling",
               literal_names(DynamicSamplingName))
        check(self.resample_budget is None or (self.resample_budget >= 1 and
              self.dynamic_sampling == "resample"), "algorithm.resample_budget",
              f"must be >= 1 or null, and is read only with dynamic_sampling resample, got "
              f"{self.resample_budget!r} with {self.dynamic_sampling}")
        check(self.overlong_cache is None or self.overlong_cache >= 1, "algorithm.overlong_cache",
              "must be >= 1 or null")
        one_of(self.rollout_correction, "algorithm.rollout_correction",
               literal_names(RolloutCorrectionName))
        check(self.rollout_correction_cap >= 1.0, "algorithm.rollout_correction_cap",
              "must be >= 1 (weights are truncated at it)")

    def spec(self, *, rewards: tuple[BoundReward, ...], policy_rollouts: int | None = None,
             vote_only_rollouts: int = 0, momentum_rollouts: int = 0,
             iqr_k: float | None = None, filter_in_loss: bool = False,
             vote: VoteSpec | None = None, momentum: MomentumSpec | None = None,
             kl_to_teacher: bool = False, paraphrases: bool = False,
             advantage_transform: AdvantageTransform | None = None) -> AlgorithmSpec:
        """The spec of this config: the method's structure (the keyword arguments: M (default
        G), V, N, the filter, the vote's pool rules, the EMA, the reward terms, the rephrased
        twins, a rule on the advantages) around the options every preset shares (loss,
        shaping, reward mixing, the vote's share and ties)."""
        return AlgorithmSpec(
            name=self.preset,
            policy_rollouts=self.rollouts if policy_rollouts is None else policy_rollouts,
            vote_only_rollouts=vote_only_rollouts,
            momentum_rollouts=momentum_rollouts,
            iqr_k=iqr_k,
            filter_in_loss=filter_in_loss,
            vote=vote or self.vote_spec(),
            rewards=rewards,
            reward_norm=self.reward_norm,
            momentum=momentum,
            kl_to_teacher=kl_to_teacher,
            loss=LossSpec(advantage=self.advantage, agg=self.loss_agg, clip=self.clip,
                          clip_low=self.clip_low, clip_high=self.clip_high,
                          kl_coef=self.kl_coef, kl_estimator=self.kl_estimator,
                          entropy_coef=self.entropy_coef,
                          rollout_correction=self.rollout_correction,
                          rollout_correction_cap=self.rollout_correction_cap,
                          policy_loss=self.policy_loss, ratio_level=self.ratio_level,
                          top_entropy_quantile=float(self.top_entropy_quantile)),
            shaping=ShapingSpec(dynamic_sampling=self.dynamic_sampling,
                                overlong_mask=self.overlong_mask,
                                overlong_cache=self.overlong_cache,
                                resample_budget=self.resample_budget),
            epochs=self.epochs,
            paraphrases=paraphrases,
            advantage_transform=advantage_transform,
        )

    def vote_spec(self, *, policy_votes: bool = True, filter_in_vote: bool = True,
                  momentum_weight: float = 1.0) -> VoteSpec:
        """The vote: this config's share threshold and tie rule; by default every kept
        rollout votes once (the keyword arguments are the momentum methods' pool rules)."""
        return VoteSpec(policy_votes=policy_votes, filter_in_vote=filter_in_vote,
                        min_share=self.min_vote_share, momentum_weight=momentum_weight,
                        ties=self.vote_ties)


@dataclass(frozen=True)
class TeacherConfig(AlgorithmConfig):
    """The options of a method whose momentum (EMA teacher) model samples N rollouts per
    prompt (m-grpo, co-rewarding-ii); each subclass says what null means (`teacher_rollouts`)."""

    momentum_rollouts: int | None = doc(
        None, "N, momentum-model (teacher) rollouts per prompt, >= 0; null = the preset's "
        "default. m-grpo: N < G with G - N >= 2, the policy samples M = G - N, null = G // 4 "
        "(paper: N = G/4 = 8); co-rewarding-ii: N >= 1 on top of the G policy rollouts, null = "
        "G (one teacher rollout per policy rollout)")
    kl_to_teacher: bool = doc(False, "the KL term goes to the momentum model (co-rewarding-ii's "
                              "teacher) instead of the frozen initial model; needs N > 0, full "
                              "weights and kl_coef > 0")

    def __post_init__(self) -> None:
        super().__post_init__()
        check(self.momentum_rollouts is None or self.momentum_rollouts >= 0,
              "algorithm.momentum_rollouts", f"must be >= 0 or null, got {self.momentum_rollouts}")
        check(not self.kl_to_teacher or self.kl_coef > 0, "algorithm.kl_to_teacher",
              "needs algorithm.kl_coef > 0 (the KL term it redirects)")
        check(not self.kl_to_teacher or self.teacher_rollouts() > 0, "algorithm.kl_to_teacher",
              f"preset {self.preset} samples no momentum (teacher) rollouts here (N = 0), so "
              "there is no teacher to take the KL to")

    def teacher_rollouts(self) -> int:
        """N, with null resolved to the preset's default."""
        raise NotImplementedError


def _check_reward_name(name: str, key: str) -> None:
    """A registry name or a user spec ('x.py:f'; loaded when the algorithm is resolved)."""
    check(isinstance(name, str) and bool(name), key,
          f"expected a reward name or 'file.py:function', got {name!r}")
    check(is_user_spec(name) or name in REWARDS, key,
          f"{REWARDS.unknown_message(name)}, or a user function 'path/to/file.py:function' / "
          "'package.module:function'")


# -------------------------------------------------------------------------------- the spec

#: ``transform(inputs, advantages (B, M), in_loss (B, M) bool) -> (B, M)``: a method's rule on
#: the group advantages, applied after the estimator (RESTRAIN's prompt weights and penalty);
#: the method's parameters are bound into it.
AdvantageTransform = Callable[["RewardInputs", "Tensor", "Tensor"], "Tensor"]


@dataclass(frozen=True)
class VoteSpec:
    """How the majority vote pools the answers (`core.voting.vote_groups`)."""

    policy_votes: bool  # policy rollouts vote (False: only the momentum rollouts)
    filter_in_vote: bool  # IQR-dropped rollouts leave the vote
    min_share: float  # a winner with a smaller share gives no label
    momentum_weight: float  # a momentum vote counts this many times
    ties: str  # a name in `core.voting.VOTE_TIES`


@dataclass(frozen=True)
class LossSpec:
    """What the advantage and the loss read (`core.advantages`, `core.losses.policy_loss`)."""

    advantage: str  # a name in `core.advantages.ADVANTAGE_ESTIMATORS`
    agg: str  # a name in `core.losses.LOSS_AGGREGATIONS`
    clip: float  # PPO clip epsilon
    clip_low: float | None  # lower clip epsilon (None = clip)
    clip_high: float | None  # upper clip epsilon (None = clip)
    kl_coef: float  # beta of the KL term (0 = no reference model)
    kl_estimator: str  # a name in `core.losses.KL_ESTIMATORS`
    entropy_coef: float  # static entropy bonus (0 = off)
    rollout_correction: str  # off | token | sequence (`core.correction`)
    rollout_correction_cap: float  # its truncation threshold C
    policy_loss: str = "ppo"  # a name in `core.losses.POLICY_LOSSES`
    ratio_level: str = "token"  # token | sequence (GSPO), `core.losses.RATIO_LEVELS`
    top_entropy_quantile: float = 1.0  # share of tokens that carry the pg term (1 = all)


@dataclass(frozen=True)
class ShapingSpec:
    """DAPO's shaping of the rewards and the loss set (`train/step_shaping.py`)."""

    dynamic_sampling: str  # off | filter | resample
    overlong_mask: bool  # truncated rollouts leave the loss
    overlong_cache: int | None  # soft overlong penalty band (None = off)
    resample_budget: int | None = None  # extra groups per step (None = one per prompt)


@dataclass(frozen=True)
class MomentumSpec:
    """The EMA m of the momentum model: a constant, or Co-rewarding-II's cosine schedule
    `m_t = 1 - alpha(t)` from `alpha_start` to `alpha_end` (`core.ema.cosine_momentum`)."""

    m: float | None = None  # the constant momentum
    schedule: tuple[float, float] | None = None  # (alpha_start, alpha_end)


@dataclass(frozen=True)
class AlgorithmSpec:
    """Resolved, derived settings of one algorithm: all the step reads about it (never
    written back into the config). Shapes: B prompts, G = M + V + N rollouts each."""

    name: str  # the preset
    policy_rollouts: int  # M: policy samples that enter the loss
    vote_only_rollouts: int  # V: extra policy samples that only vote (TTRL)
    momentum_rollouts: int  # N: momentum-model samples (vote only)
    iqr_k: float | None  # k of the IQR entropy filter; None = off
    filter_in_loss: bool  # IQR-dropped policy rollouts leave the loss set
    vote: VoteSpec  # how the vote pools the answers (it runs when a reward `votes`)
    rewards: tuple[BoundReward, ...]  # the reward terms, parameters bound
    reward_norm: str  # how several terms mix (`train.rewards.REWARD_NORMS`)
    momentum: MomentumSpec | None  # the momentum model's EMA (None: the method has none)
    kl_to_teacher: bool  # the KL term goes to the momentum model, not the initial one
    loss: LossSpec
    shaping: ShapingSpec
    epochs: int = 1  # mu: passes of updates over each step's rollouts
    # co-rewarding-i: each prompt's rephrased twin (`StepBatch.twin_ids`) samples M + V
    # rollouts of its own; the step runs on 2B prompts, the twins after the originals
    paraphrases: bool = False
    # a rule on the advantages after the estimator (None = the estimator's advantages)
    advantage_transform: AdvantageTransform | None = None

    def __post_init__(self) -> None:
        if self.paraphrases and self.momentum_rollouts:
            raise ValueError("rephrased twins (co-rewarding-i) sample policy rollouts only: "
                             f"momentum_rollouts must be 0, got {self.momentum_rollouts}")
        if self.paraphrases and self.shaping.dynamic_sampling == "resample":
            raise ValueError("rephrased twins (co-rewarding-i) and dynamic_sampling=resample "
                             "cannot be combined: resampling regenerates the questions' groups "
                             "only; use dynamic_sampling=filter")

    @property
    def votes(self) -> bool:
        """The step runs the majority vote (some reward reads the pseudo-label)."""
        return any(r.votes for r in self.rewards)

    @property
    def needs_labels(self) -> bool:
        """Some reward reads the ground truth (every training prompt needs an answer)."""
        return any(r.needs_truth for r in self.rewards)

    @property
    def uses_momentum_model(self) -> bool:
        return self.momentum_rollouts > 0

    @property
    def group_size(self) -> int:
        """Rollouts per prompt that are generated: policy (train + vote-only) + momentum."""
        return self.policy_rollouts + self.vote_only_rollouts + self.momentum_rollouts

    def momentum_at(self, step: int, total_steps: int) -> float:
        """The EMA momentum of step `step`: the constant m, or the cosine schedule's."""
        if self.momentum is None:
            raise ValueError(f"preset {self.name} has no momentum model")
        if self.momentum.schedule is None:
            assert self.momentum.m is not None
            return self.momentum.m
        # lazy, start-up: the EMA schedule is tensor-free but lives with the EMA in core
        from mgrpo.core.ema import cosine_momentum

        return cosine_momentum(step, total_steps, *self.momentum.schedule)


# ----------------------------------------------------------------------------- the presets


@dataclass(frozen=True)
class Preset:
    """A `PRESETS` entry: the config type of the preset and its spec function."""

    name: str
    config: type[AlgorithmConfig]
    resolve: Callable[[AlgorithmConfig], AlgorithmSpec]

    def options(self) -> tuple[str, ...]:
        """The option names only this preset's config type declares (not the base's)."""
        shared = {f.name for f in fields(AlgorithmConfig)}
        return tuple(f.name for f in fields(self.config) if f.name not in shared)

    def changed_defaults(self) -> dict[str, tuple[object, str]]:
        """Shared option -> (this preset's default, its source), for the options its config
        type re-declares with `preset_default`."""
        return {f.name: (f.default, f.metadata[PRESET_DEFAULT]) for f in fields(self.config)
                if PRESET_DEFAULT in f.metadata}


#: preset name -> `Preset`, one per method (registered in the method's module).
PRESETS: Registry[Preset] = Registry("preset")


def preset(name: str, config: type[AlgorithmConfig]
           ) -> Callable[[Callable[..., AlgorithmSpec]], Callable[..., AlgorithmSpec]]:
    """Register the decorated spec function of preset `name`, configured by `config`."""
    def add(resolve: Callable[..., AlgorithmSpec]) -> Callable[..., AlgorithmSpec]:
        PRESETS.register(name, Preset(name, config, resolve))
        return resolve

    return add

