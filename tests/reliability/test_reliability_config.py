"""Every config field, walked generically: bad values are rejected with the dotted field name
and the allowed values or range; nothing but ConfigError escapes (no TypeError, no crash)."""

from __future__ import annotations

import dataclasses
import re
import types
import typing

import pytest

from mgrpo.config import AlgorithmConfig, Config, ConfigError, config_from_dict, resolve_config
from mgrpo.methods import PRESETS

RANGE_WORDS = re.compile(r">=|<=|> 0|in \[|in \(|one of|expected|must|subset|not auto|valid names")
NUMBER_BAD = ["abc", [1], {"a": 1}, True]
FLOAT_NONFINITE = [float("nan"), float("inf"), float("-inf"), "nan", "inf"]
HUGE_NEGATIVE = {int: -(10**9), float: -1e30}


def leaves(cls=Config, prefix=""):
    """(dotted key, type hint) of every leaf field of the config dataclasses; the algorithm
    section's are the fields of every preset's type (each once: `PRESET_OF` names a preset
    that reads a preset-only key)."""
    hints = typing.get_type_hints(cls)
    for f in dataclasses.fields(cls):
        hint = hints[f.name]
        key = f"{prefix}{f.name}"
        if hint is AlgorithmConfig:
            seen = set()
            for entry in map(PRESETS.get, PRESETS.names()):
                for name, leaf in leaves(entry.config, key + "."):
                    if name not in seen and not name.endswith(".preset"):
                        seen.add(name)
                        PRESET_OF.setdefault(name, entry.name)
                        yield name, leaf
            yield key + ".preset", str
        elif dataclasses.is_dataclass(hint):
            yield from leaves(hint, key + ".")
        else:
            yield key, hint


#: a preset whose type declares each algorithm key (set by `leaves`)
PRESET_OF: dict[str, str] = {}


def _split(hint):
    """(base type, optional?) of `T` or `T | None`."""
    if typing.get_origin(hint) in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(hint) if a is not type(None)]
        return args[0], True
    return hint, False


def nested(key: str, value) -> dict:
    out: dict = {}
    node = out
    parts = key.split(".")
    for part in parts[:-1]:
        node = node.setdefault(part, {})
    node[parts[-1]] = value
    return out


def outcome(key: str, value) -> str | None:
    """None when accepted, else the ConfigError message (any other exception fails). An
    algorithm key is given to a preset that reads it."""
    data = nested(key, value)
    if key.startswith("algorithm.") and key != "algorithm.preset":
        data["algorithm"]["preset"] = PRESET_OF[key]
    try:
        config_from_dict(data)
    except ConfigError as exc:
        return str(exc)
    return None


LEAVES = list(leaves())


def test_the_walk_sees_every_section():
    sections = {key.split(".")[0] for key, _ in LEAVES}
    assert sections >= {"seed", "model", "data", "algorithm", "generation", "optim", "trainer",
                        "validation"}
    assert len(LEAVES) >= 60


@pytest.mark.parametrize(("key", "hint"), LEAVES, ids=[k for k, _ in LEAVES])
def test_bad_values_are_rejected_naming_the_field_and_range(key, hint):
    base, optional = _split(hint)
    wrong_type = {int: NUMBER_BAD + [1.5, "1e3"], float: NUMBER_BAD, str: [5, 1.5, [1], True],
                  bool: ["yes", 2, "true"], list: [5, 1.5, {"a": 1}, [1], ["ok", True], True],
                  dict: [5, "x", [1], True],
                  typing.Literal: [5, 1.5, [1], True, "no-such-choice"]
                  }[typing.get_origin(base) or base]
    must_reject = list(wrong_type)
    if not optional:
        must_reject.append(None)
    if base is float:
        must_reject += FLOAT_NONFINITE
    if base in (int, float):
        must_reject.append(HUGE_NEGATIVE[base])  # every numeric knob has a lower bound
    for value in must_reject:
        message = outcome(key, value)
        assert message is not None, f"{key}={value!r} was accepted"
        assert message.startswith(f"{key}:") or f"'{key}'" in message, message
        assert RANGE_WORDS.search(message), message
        assert "Traceback" not in message and "\n" not in message


def test_empty_required_strings_are_rejected():
    required = [k for k, h in LEAVES if _split(h) == (str, False)]
    accepted_empty = {"data.template"}  # validated when rendering (no prompt can be built)
    for key in required:
        if key in accepted_empty:
            continue
        if key == "data.suffix":
            continue
        message = outcome(key, "")
        if message is None:
            pytest.fail(f"{key}='' accepted")
        assert key in message


def test_choice_fields_list_their_choices():
    checked = 0
    for key, hint in LEAVES:
        base = _split(hint)[0]
        if base is not str and typing.get_origin(base) is not typing.Literal:
            continue
        message = outcome(key, "no-such-choice-☃")
        if message is not None and "one of" in message:
            assert message.startswith(f"{key}:") and "[" in message, message
            checked += 1
    assert checked >= 8


def test_the_resolved_config_shows_what_the_run_reads():
    from mgrpo.config import dump_config

    assert "synthetic:" not in dump_config(resolve_config("demo"))  # lab data
    assert "synthetic:" in dump_config(resolve_config("tiny"))  # arithmetic
    assert "synthetic:" in dump_config(resolve_config("demo", ["validation.data=arithmetic"]))
    srt = dump_config(resolve_config("tiny", ["algorithm.preset=srt"]))
    assert "iqr_k" not in srt and "momentum:" not in srt  # m-grpo's own options


def test_cross_field_constraints_name_both_fields():
    with pytest.raises(ConfigError) as info:  # m-grpo: N < G
        config_from_dict({"algorithm": {"preset": "m-grpo", "momentum_rollouts": 40}})
    message = str(info.value)
    assert "algorithm.momentum_rollouts" in message and "G = 32" in message
    try:
        config_from_dict({"trainer": {"prompts_per_step": 2, "updates_per_step": 3}})
    except ConfigError as exc:
        assert "trainer.updates_per_step" in str(exc) and "prompts_per_step" in str(exc)
    else:
        pytest.fail("updates_per_step > prompts_per_step accepted")


@pytest.mark.parametrize("override", ["optim.lr=nan", "optim.lr=.inf", "generation.temperature=inf",
                                      "trainer.max_steps=1e3", "algorithm.nope=1", "seed=-1"])
def test_overrides_are_validated_the_same_way(override):
    with pytest.raises(ConfigError) as info:
        resolve_config("tiny", [override])
    assert override.split("=")[0] in str(info.value)
