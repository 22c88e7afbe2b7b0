"""Resolving the algorithm: the method's config -> the `AlgorithmSpec` the step reads.

`resolve_algorithm(cfg)` runs the spec function of the preset (`mgrpo.methods`), replaces its
reward terms by `algorithm.reward` / `algorithm.rewards` when they are set (a user function
is loaded here, so a bad one stops the run before any model loads), and refuses an option the
spec would ignore: the vote's share threshold or tie rule when no reward votes. What cannot
be resolved is a `ConfigError` naming the key (`mgrpo train` exits 2 on it, as on any config
error). An overriding reward that the preset also uses keeps the preset's parameters.
"""

from __future__ import annotations

import dataclasses

from mgrpo.fields import ConfigError
from mgrpo.methods import PRESETS, AlgorithmConfig, AlgorithmSpec, BoundReward
from mgrpo.train.rewards import resolve_reward

__all__ = ["resolve_algorithm"]


def resolve_algorithm(cfg: AlgorithmConfig) -> AlgorithmSpec:
    """Preset + options -> AlgorithmSpec (module docstring); ConfigError naming the key."""
    spec = PRESETS.get(cfg.preset).resolve(cfg)
    if cfg.reward is not None or cfg.rewards is not None:
        spec = dataclasses.replace(spec, rewards=_reward_terms(cfg, spec))
    _refuse_ignored_vote_options(cfg, spec)
    return spec


def _reward_terms(cfg: AlgorithmConfig, spec: AlgorithmSpec) -> tuple[BoundReward, ...]:
    """The terms of `algorithm.rewards` (or the one of `algorithm.reward`), each bound."""
    if cfg.rewards is not None:
        wanted = [(term.fn, term.weight, f"algorithm.rewards[{i}].fn")
                  for i, term in enumerate(cfg.rewards)]
    else:
        assert cfg.reward is not None
        wanted = [(cfg.reward, 1.0, "algorithm.reward")]
    own = {term.name: term for term in spec.rewards}  # the preset's, parameters bound
    return tuple(
        dataclasses.replace(own[name], weight=weight) if name in own
        else resolve_reward(name, key, weight)
        for name, weight, key in wanted)


def _refuse_ignored_vote_options(cfg: AlgorithmConfig, spec: AlgorithmSpec) -> None:
    """A vote option set away from its default is an error when nothing votes."""
    if spec.votes:
        return
    defaults = {f.name: f.default for f in dataclasses.fields(AlgorithmConfig)}
    for name in AlgorithmConfig.VOTE_OPTIONS:
        if getattr(cfg, name) != defaults[name]:
            rewards = ", ".join(term.name for term in spec.rewards)
            raise ConfigError(f"algorithm.{name}: preset {cfg.preset} does not vote (its reward "
                              f"{rewards} reads no pseudo-label), so it would ignore it; remove "
                              "it or choose a reward that votes")
