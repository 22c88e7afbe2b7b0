"""Algorithm presets: each a few lines of configuration over the same step.

A preset turns the user's `AlgorithmConfig` into an `AlgorithmSpec`: how many rollouts the
policy and the momentum model sample, which of them vote, whether the IQR filter runs, and
where the reward comes from (a name in `train/rewards.REWARDS`), plus the loss settings
every preset shares (advantage estimator, loss aggregation, clip, KL coefficient). `step.py`
reads only the spec, never the preset name or `cfg.algorithm`.

| preset   | policy M | momentum N | vote pool              | filter | reward                    |
|----------|----------|------------|------------------------|--------|---------------------------|
| m-grpo   | G - N    | N (G/4)    | policy + momentum      | IQR k  | agrees with the vote      |
| srt      | G        | 0          | policy                 | off    | agrees with the vote      |
| ttrl     | G        | 0          | G + extra policy (2G)  | off    | agrees with the vote      |
| intuitor | G        | 0          | none                   | off    | self-certainty            |
| grpo     | G        | 0          | none                   | off    | agrees with ground truth  |
| co-rewarding-ii | G | N (G)      | momentum (teacher) only| off    | agrees with the vote      |
| empo     | G        | 0          | none (clusters)        | off    | share of its answer cluster|
| em-rl    | G        | 0          | none                   | off    | -sum_t H_t                |
| rent     | G        | 0          | none                   | off    | -mean H_t, last k tokens  |
| random   | G        | 0          | none                   | off    | Bernoulli(p)              |

`algorithm.reward` / `algorithm.rewards` replace a preset's reward (a registry name or a user
function; the step then also votes, so a user reward can read the pseudo-label). The
co-rewarding-ii teacher is the momentum model with Co-rewarding-II's cosine EMA schedule
(`core.ema.cosine_momentum`); formulas and sources of every preset: docs/methods.md.

Departure from the paper's code: none intended; the authors' released code never enables
the momentum rollouts, ours does (m-grpo row).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass

from mgrpo.config import AlgorithmConfig, default_momentum_rollouts
from mgrpo.core.ema import cosine_momentum


@dataclass(frozen=True)
class AlgorithmSpec:
    """Resolved, derived settings of one algorithm (never written back into the config)."""

    name: str
    policy_rollouts: int  # M: policy samples that enter the loss
    vote_only_rollouts: int  # extra policy samples that only vote (TTRL)
    momentum_rollouts: int  # N: momentum-model samples (vote only)
    iqr_k: float | None  # None = filter off
    filter_in_loss: bool  # IQR-dropped policy rollouts leave the loss set (scope loss, vote+loss)
    reward: str  # a name in `train/rewards.REWARDS` ("vote" | "truth" | "self_certainty")
    min_vote_share: float
    momentum: float  # EMA momentum m of the momentum model
    needs_labels: bool  # reward uses ground truth (only `grpo`)
    advantage: str  # a name in `core.advantages.ADVANTAGE_ESTIMATORS`
    loss_agg: str  # a name in `core.losses.LOSS_AGGREGATIONS`
    clip: float  # PPO clip range epsilon
    kl_coef: float  # beta of the KL to the reference (0 = no reference model)
    # --- options beyond the paper (defaults: the paper's step, bit for bit) ---
    votes: bool = False  # the step runs the majority vote (a vote reward or a user reward)
    policy_votes: bool = True  # policy rollouts vote (False: only the momentum model votes)
    filter_in_vote: bool = True  # IQR-dropped rollouts leave the vote (scope vote, vote+loss)
    kl_estimator: str = "k3"  # a name in `core.losses.KL_ESTIMATORS`
    rewards: tuple[tuple[str, float], ...] = ()  # several rewards (name, weight); () = `reward`
    reward_norm: str = "sum"  # how `rewards` mix (`user_rewards.REWARD_NORMS`)
    momentum_vote_weight: float = 1.0  # a momentum vote counts this many times
    vote_ties: str = "policy-first"  # `core.voting.VOTE_TIES`
    momentum_schedule: tuple[float, float] | None = None  # cosine (alpha_start, alpha_end)
    clip_low: float | None = None  # None = clip
    clip_high: float | None = None  # None = clip
    entropy_coef: float = 0.0  # static entropy bonus (0 = off)
    dynamic_sampling: str = "off"  # off | filter
    overlong_mask: bool = False  # truncated rollouts leave the loss
    overlong_cache: int | None = None  # DAPO soft overlong penalty band (None = off)
    random_p: float = 0.5  # preset random
    rent_tokens: int = 16  # preset rent
    kl_to_teacher: bool = False  # the KL term goes to the momentum model, not the initial one

    def momentum_at(self, step: int, total_steps: int) -> float:
        """The EMA momentum of step `step`: `momentum`, or the cosine schedule's."""
        if self.momentum_schedule is None:
            return self.momentum
        return cosine_momentum(step, total_steps, *self.momentum_schedule)

    @property
    def reward_terms(self) -> tuple[tuple[str, float], ...]:
        """(reward, weight) pairs: `rewards`, or `reward` with weight 1."""
        return self.rewards or ((self.reward, 1.0),)

    @property
    def uses_momentum_model(self) -> bool:
        return self.momentum_rollouts > 0

    @property
    def group_size(self) -> int:
        """Rollouts per prompt that are generated: policy (train + vote-only) + momentum."""
        return self.policy_rollouts + self.vote_only_rollouts + self.momentum_rollouts


def _loss_settings(cfg: AlgorithmConfig) -> dict[str, str | float]:
    """The loss settings every preset takes from the config as they are."""
    return {"advantage": cfg.advantage, "loss_agg": cfg.loss_agg, "clip": cfg.clip,
            "kl_coef": cfg.kl_coef}


def _m_grpo(cfg: AlgorithmConfig) -> AlgorithmSpec:
    n = default_momentum_rollouts(cfg.rollouts) if cfg.momentum_rollouts is None else cfg.momentum_rollouts
    return AlgorithmSpec(
        name="m-grpo",
        policy_rollouts=cfg.rollouts - n,
        vote_only_rollouts=0,
        momentum_rollouts=n,
        iqr_k=cfg.iqr_k,
        filter_in_loss=cfg.filter_scope in ("loss", "vote+loss"),
        filter_in_vote=cfg.filter_scope in ("vote", "vote+loss"),
        policy_votes=cfg.policy_votes,
        reward="vote",
        min_vote_share=cfg.min_vote_share,
        momentum=cfg.momentum,
        needs_labels=False,
        **_loss_settings(cfg),
    )


def _plain(name: str, reward: str, cfg: AlgorithmConfig, vote_only: int = 0) -> AlgorithmSpec:
    return AlgorithmSpec(
        name=name,
        policy_rollouts=cfg.rollouts,
        vote_only_rollouts=vote_only,
        momentum_rollouts=0,
        iqr_k=None,
        filter_in_loss=False,
        reward=reward,
        min_vote_share=cfg.min_vote_share if reward == "vote" else 0.0,
        momentum=cfg.momentum,
        needs_labels=reward == "truth",
        **_loss_settings(cfg),
    )


def _ttrl(cfg: AlgorithmConfig) -> AlgorithmSpec:
    voters = cfg.ttrl_vote_rollouts if cfg.ttrl_vote_rollouts is not None else 2 * cfg.rollouts
    return _plain("ttrl", "vote", cfg, vote_only=voters - cfg.rollouts)


def _co_rewarding_ii(cfg: AlgorithmConfig) -> AlgorithmSpec:
    """G policy rollouts train; N teacher (momentum) rollouts (default G, one per policy
    rollout as in Co-rewarding-II) are the only voters; the teacher's EMA follows the cosine
    schedule of `algorithm.teacher_alpha`."""
    n = cfg.rollouts if cfg.momentum_rollouts is None else cfg.momentum_rollouts
    spec = _plain("co-rewarding-ii", "vote", cfg)
    return dataclasses.replace(spec, momentum_rollouts=n, policy_votes=False,
                               momentum_schedule=(cfg.teacher_alpha[0], cfg.teacher_alpha[1]))


PRESETS: dict[str, Callable[[AlgorithmConfig], AlgorithmSpec]] = {
    "m-grpo": _m_grpo,
    "srt": lambda cfg: _plain("srt", "vote", cfg),
    "ttrl": _ttrl,
    "intuitor": lambda cfg: _plain("intuitor", "self_certainty", cfg),
    "grpo": lambda cfg: _plain("grpo", "truth", cfg),
    "co-rewarding-ii": _co_rewarding_ii,
    "empo": lambda cfg: _plain("empo", "cluster_share", cfg),
    "em-rl": lambda cfg: _plain("em-rl", "negative_entropy", cfg),
    "rent": lambda cfg: _plain("rent", "answer_entropy", cfg),
    "random": lambda cfg: _plain("random", "random", cfg),
}


def _options(spec: AlgorithmSpec, cfg: AlgorithmConfig) -> AlgorithmSpec:
    """The reward override and the options beyond the paper, from the config."""
    terms = tuple((t.fn, t.weight) for t in cfg.rewards) if cfg.rewards else ()
    reward = terms[0][0] if terms else (cfg.reward or spec.reward)
    names = [name for name, _ in terms] or [reward]
    # lazy, cycle: the reward registry imports the step records, which import this module
    from mgrpo.train.rewards import get_reward, reward_votes

    for name in names:
        get_reward(name)  # a user function is loaded now: errors before the first step
    return dataclasses.replace(
        spec,
        reward=reward,
        rewards=terms,
        reward_norm=cfg.reward_norm,
        votes=any(reward_votes(name) for name in names),
        needs_labels="truth" in names,
        min_vote_share=cfg.min_vote_share if any(reward_votes(n) for n in names) else 0.0,
        momentum_vote_weight=cfg.momentum_vote_weight,
        vote_ties=cfg.vote_ties,
        clip_low=cfg.clip_low,
        clip_high=cfg.clip_high,
        entropy_coef=cfg.entropy_coef,
        dynamic_sampling=cfg.dynamic_sampling,
        overlong_mask=cfg.overlong_mask,
        overlong_cache=cfg.overlong_cache,
        random_p=cfg.random_p,
        rent_tokens=cfg.rent_tokens,
        kl_to_teacher=cfg.kl_to_teacher,
        kl_estimator=cfg.kl_estimator,
    )


def resolve_algorithm(cfg: AlgorithmConfig) -> AlgorithmSpec:
    """Preset name + knobs -> AlgorithmSpec; unknown names list the valid ones."""
    try:
        build = PRESETS[cfg.preset]
    except KeyError:
        raise ValueError(
            f"unknown preset {cfg.preset!r}; valid presets: {', '.join(PRESETS)}"
        ) from None
    spec = _options(build(cfg), cfg)
    if spec.kl_to_teacher and not spec.uses_momentum_model:
        raise ValueError(f"algorithm.kl_to_teacher: preset {spec.name} samples no momentum "
                         "(teacher) rollouts, so there is no teacher to take the KL to")
    if not cfg.policy_votes and spec.policy_votes:
        raise ValueError(f"algorithm.policy_votes: false: preset {spec.name} has no momentum "
                         "vote to leave to (m-grpo reads it; co-rewarding-ii's policy never votes)")
    return spec
