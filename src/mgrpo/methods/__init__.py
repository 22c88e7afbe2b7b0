"""The methods: one module per method family, each with its config type, spec, rewards and
sources (`base.py` says what a method is; `inputs.py` what it reads).

    m_grpo            m-grpo: momentum rollouts vote, IQR entropy filter (this project's paper)
    self_consistency  srt, ttrl: the policy's own majority vote; the `vote` reward
    co_rewarding      co-rewarding-ii: an EMA teacher's vote labels the policy;
                      co-rewarding-i: each question's rephrased twin's vote labels it
    intuitor          intuitor: self-certainty
    supervised        grpo: the ground truth (the upper bound)
    empo              empo: the share of a rollout's answer cluster
    entropy_min       em-rl, rent: negative token entropy
    evol_rl           evol-rl: the vote, rescaled by each rollout's novelty
    restrain          restrain: weighted pseudo-labels, a prompt rule on the advantages
    scrl              scrl: a strict-consensus positive label, entropy-gated negatives
    controls          random, format, incorrect-label: the spurious-reward controls

Every module of this package is imported here, so its presets and rewards are registered
when `PRESETS` / `REWARDS` are read: a new method is one new module (and its test). Nothing
here imports torch (`tests/test_layout.py` checks it).
"""

from __future__ import annotations

import importlib
import pkgutil

from mgrpo.methods.base import (
    PRESETS,
    REWARDS,
    AlgorithmConfig,
    AlgorithmSpec,
    BoundReward,
    Preset,
    Reward,
    RewardTerm,
    TeacherConfig,
)
from mgrpo.methods.inputs import RewardInputs, Rollouts

#: the modules of this package that are not method families
_NOT_METHODS = {"base", "inputs", "reward_registry"}

#: the method modules, in name order (each registers its presets and rewards on import)
METHOD_MODULES: tuple[str, ...] = tuple(
    f"{__name__}.{info.name}" for info in pkgutil.iter_modules(__path__)
    if info.name not in _NOT_METHODS)
for _module in METHOD_MODULES:
    importlib.import_module(_module)

__all__ = [
    "METHOD_MODULES",
    "PRESETS",
    "REWARDS",
    "AlgorithmConfig",
    "AlgorithmSpec",
    "BoundReward",
    "Preset",
    "Reward",
    "RewardInputs",
    "RewardTerm",
    "Rollouts",
    "TeacherConfig",
]
