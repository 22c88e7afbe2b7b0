"""The methods package's contract: one module per method family, each preset's config type
chosen by its name, every option declared once, names in the config equal to the registries,
and every key documented (`field_docs`)."""

from __future__ import annotations

import dataclasses
import importlib
import typing

import pytest

from mgrpo.answers import ANSWER_KINDS
from mgrpo.config import Config, ConfigError, algorithm_config, field_docs
from mgrpo.config.sections import AnswerKind, EngineName
from mgrpo.core.advantages import ADVANTAGE_ESTIMATORS
from mgrpo.core.losses import KL_ESTIMATORS, LOSS_AGGREGATIONS
from mgrpo.core.voting import VOTE_TIES
from mgrpo.fields import literal_names
from mgrpo.methods import METHOD_MODULES, PRESETS, REWARDS, AlgorithmConfig
from mgrpo.methods.base import (
    PRESET_DEFAULT,
    AdvantageName,
    KLEstimatorName,
    LossAggregationName,
    RewardNormName,
    VoteTieName,
    preset_default,
)
from mgrpo.rollout import ENGINES
from mgrpo.train.algorithm import resolve_algorithm
from mgrpo.train.rewards import REWARD_NORMS

PRESET_TYPES = [PRESETS.get(name).config for name in PRESETS.names()]


@pytest.mark.parametrize(("alias", "registry"), [
    (AdvantageName, ADVANTAGE_ESTIMATORS), (LossAggregationName, LOSS_AGGREGATIONS),
    (KLEstimatorName, KL_ESTIMATORS), (VoteTieName, VOTE_TIES), (RewardNormName, REWARD_NORMS),
    (EngineName, ENGINES)], ids=lambda x: getattr(x, "kind", None) or "names")
def test_the_names_in_the_config_are_the_registry_names(alias, registry):
    assert sorted(literal_names(alias)) == list(registry.names())


def test_answer_kinds_in_the_config_are_the_extractors():
    assert sorted(literal_names(AnswerKind)) == sorted(ANSWER_KINDS)


def test_every_method_module_registers_a_preset_and_is_found():
    found = {entry.resolve.__module__ for entry in map(PRESETS.get, PRESETS.names())}
    assert found == set(METHOD_MODULES)
    for name in PRESETS.names():  # the discriminator: each type names its preset
        config = PRESETS.get(name).config
        assert typing.get_type_hints(config)["preset"] == typing.Literal[name]
        assert config.__module__ == PRESETS.get(name).resolve.__module__  # one file


def test_every_builtin_reward_lives_in_a_method_module():
    for name in REWARDS.names():
        assert REWARDS.get(name).fn.__module__ in METHOD_MODULES, name


def _redeclared_with_preset_default(klass: type, name: str) -> bool:
    own = vars(klass).get("__dataclass_fields__", {}).get(name)
    return klass is not AlgorithmConfig and own is not None and PRESET_DEFAULT in own.metadata


def test_each_option_is_declared_once():
    declared: dict[str, set[type]] = {}
    for cls in PRESET_TYPES:
        for klass in cls.__mro__:
            for name in vars(klass).get("__annotations__", {}):
                if (name != "preset" and not name.isupper()
                        and not _redeclared_with_preset_default(klass, name)):
                    declared.setdefault(name, set()).add(klass)
    twice = {name: sorted(k.__name__ for k in owners) for name, owners in declared.items()
             if len(owners) > 1}
    assert twice == {}


def test_a_preset_default_keeps_the_shared_description_and_type():
    shared = {f.name: f for f in dataclasses.fields(AlgorithmConfig)}
    hints = typing.get_type_hints(AlgorithmConfig)
    changed = {name: PRESETS.get(name).changed_defaults() for name in PRESETS.names()}
    assert changed["evol-rl"] == {"entropy_coef": (0.003, "EVOL-RL's README run: --ent 0.003"),
                                  "clip_high": (0.28, "EVOL-RL's README run: --clip-high, 0.28")}
    for preset_name, options in changed.items():
        config = PRESETS.get(preset_name).config
        for name in options:
            field = {f.name: f for f in dataclasses.fields(config)}[name]
            assert field.metadata["doc"] == shared[name].metadata["doc"]
            assert typing.get_type_hints(config)[name] == hints[name]
    # a value the recipe sets still wins; another preset keeps the shared default
    assert algorithm_config(preset="evol-rl", entropy_coef=0.0).entropy_coef == 0.0
    assert algorithm_config(preset="srt").entropy_coef == 0.0
    with pytest.raises(ValueError, match="not an option every preset reads"):
        preset_default("nope", 1, "x")


def _sections(cls=Config):
    yield cls
    hints = typing.get_type_hints(cls)
    for f in dataclasses.fields(cls):
        if dataclasses.is_dataclass(hints[f.name]) and hints[f.name] is not AlgorithmConfig:
            yield from _sections(hints[f.name])


def test_field_docs_cover_every_key_of_every_section():
    sections = [*_sections(), *PRESET_TYPES]
    assert len(sections) >= 20
    missing = [f"{cls.__name__}.{name}" for cls in sections
               for name, text in field_docs(cls).items() if len(text) < 10]
    assert missing == []


def test_a_preset_refuses_an_option_it_ignores():
    with pytest.raises(ConfigError, match="algorithm.iqr_k: preset co-rewarding-ii does not "
                                          r"read it \(an option of m-grpo\)"):
        algorithm_config(preset="co-rewarding-ii", iqr_k=0.5)
    # at its default the option changes nothing: a recipe written for m-grpo runs srt
    assert algorithm_config(preset="srt", iqr_k=0.75, momentum=0.99).preset == "srt"
    with pytest.raises(ConfigError, match="unknown key 'algorithm.nope'"):
        algorithm_config(preset="srt", nope=1)


def test_vote_options_are_refused_where_nothing_votes():
    with pytest.raises(ConfigError, match="algorithm.vote_ties: preset grpo does not vote"):
        resolve_algorithm(algorithm_config(preset="grpo", vote_ties="random"))
    # a user reward votes, so the same key is read
    spec = resolve_algorithm(algorithm_config(preset="grpo", vote_ties="random", reward="vote"))
    assert spec.votes and spec.vote.ties == "random"


def test_reward_parameters_are_bound_when_the_algorithm_is_resolved():
    spec = resolve_algorithm(algorithm_config(preset="rent", rent_tokens=3))
    (term,) = spec.rewards
    assert term.name == "answer_entropy" and term.fn.keywords == {"tokens": 3}
    # the preset's own reward named again keeps the preset's parameter
    again = resolve_algorithm(algorithm_config(preset="rent", rent_tokens=3,
                                               rewards=[{"fn": "answer_entropy", "weight": 2.0}]))
    assert again.rewards[0].fn.keywords == {"tokens": 3} and again.rewards[0].weight == 2.0


@pytest.mark.parametrize("module", METHOD_MODULES)
def test_method_modules_state_their_sources(module):
    text = importlib.import_module(module).__doc__ or ""
    assert "Paper" in text or "paper" in text
    assert "eparture" in text or "Public code" in text
