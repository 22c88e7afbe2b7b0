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

Departure from the paper's code: none intended; the authors' released code never enables
the momentum rollouts, ours does (m-grpo row).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from mgrpo.config import AlgorithmConfig, default_momentum_rollouts


@dataclass(frozen=True)
class AlgorithmSpec:
    """Resolved, derived settings of one algorithm (never written back into the config)."""

    name: str
    policy_rollouts: int  # M: policy samples that enter the loss
    vote_only_rollouts: int  # extra policy samples that only vote (TTRL)
    momentum_rollouts: int  # N: momentum-model samples (vote only)
    iqr_k: float | None  # None = filter off
    filter_in_loss: bool  # IQR-dropped policy rollouts also leave the loss set
    reward: str  # a name in `train/rewards.REWARDS` ("vote" | "truth" | "self_certainty")
    min_vote_share: float
    momentum: float  # EMA momentum m of the momentum model
    needs_labels: bool  # reward uses ground truth (only `grpo`)
    advantage: str  # a name in `core.advantages.ADVANTAGE_ESTIMATORS`
    loss_agg: str  # a name in `core.losses.LOSS_AGGREGATIONS`
    clip: float  # PPO clip range epsilon
    kl_coef: float  # beta of the k3 KL to the reference (0 = no reference model)

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
        filter_in_loss=cfg.filter_scope == "vote+loss",
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


PRESETS: dict[str, Callable[[AlgorithmConfig], AlgorithmSpec]] = {
    "m-grpo": _m_grpo,
    "srt": lambda cfg: _plain("srt", "vote", cfg),
    "ttrl": _ttrl,
    "intuitor": lambda cfg: _plain("intuitor", "self_certainty", cfg),
    "grpo": lambda cfg: _plain("grpo", "truth", cfg),
}


def resolve_algorithm(cfg: AlgorithmConfig) -> AlgorithmSpec:
    """Preset name + knobs -> AlgorithmSpec; unknown names list the valid ones."""
    try:
        build = PRESETS[cfg.preset]
    except KeyError:
        raise ValueError(
            f"unknown preset {cfg.preset!r}; valid presets: {', '.join(PRESETS)}"
        ) from None
    return build(cfg)
