"""The run configuration: `Config` (the root), YAML recipes, dotted overrides, and the builder.

A recipe is a YAML file (or the name of one shipped in `mgrpo/recipes/`) whose keys mirror the
dataclasses: `Config` here, its sections in `mgrpo.config.sections`, and the `algorithm`
section, which is the config type of the method `algorithm.preset` names (`mgrpo.methods`:
one type per method, chosen by that discriminator). Unknown keys are rejected with the list
of valid keys; every value is type-checked (a `Literal` lists its names) and range-checked in
`__post_init__` with a message naming the dotted key. Command-line overrides use dotted
keys: `algorithm.rollouts=16 optim.lr=2e-6`.

An `algorithm` key that another preset's type declares but this preset's does not is dropped
when it holds that option's default (a recipe written for m-grpo, `iqr_k: 0.75`, runs srt
unchanged) and refused otherwise, naming the key and the preset. Derived values (the
policy/momentum split of G, what each preset switches on) are the method's spec
(`mgrpo.methods`), never written back into the config. Nothing here imports torch.
"""

from __future__ import annotations

import copy
import dataclasses
import math
import types
import typing
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

from mgrpo.config.sections import (
    DataConfig,
    DiagnosticsConfig,
    DistributedConfig,
    GenerationConfig,
    ModelConfig,
    OptimConfig,
    TrainerConfig,
    ValidationConfig,
)
from mgrpo.fields import ConfigError, check, doc
from mgrpo.methods import PRESETS, AlgorithmConfig
from mgrpo.methods.m_grpo import MGrpoConfig
from mgrpo.registry import UnknownNameError

#: the data sources that read `data.synthetic`
SYNTHETIC_SOURCE = "arithmetic"


@dataclass(frozen=True)
class Config:
    """A complete, resolved run configuration."""

    seed: int = doc(0, "the run's one seed, >= 0: every sampling seed derives from it "
                    "(`mgrpo.seeds`)")
    model: ModelConfig = doc(None, "model.*: which model trains, its dtypes, device and "
                                "rollout engine", factory=ModelConfig)
    data: DataConfig = doc(None, "data.*: the training prompts and their template",
                              factory=DataConfig)
    algorithm: AlgorithmConfig = doc(None, "algorithm.*: the method's config type, chosen by "
                                     "algorithm.preset", factory=MGrpoConfig)
    generation: GenerationConfig = doc(None, "generation.*: sampling of the training "
                                          "rollouts", factory=GenerationConfig)
    optim: OptimConfig = doc(None, "optim.*: AdamW and the learning-rate schedule",
                                factory=OptimConfig)
    trainer: TrainerConfig = doc(None, "trainer.*: steps, batch sizes, checkpoints, "
                                    "trackers", factory=TrainerConfig)
    validation: ValidationConfig = doc(None, "validation.*: periodic validation through "
                                          "the evaluation harness", factory=ValidationConfig)
    distributed: DistributedConfig = doc(None, "distributed.*: multi-process training "
                                            "under torchrun", factory=DistributedConfig)
    diagnostics: DiagnosticsConfig = doc(None, "diagnostics.*: the collapse alarm's "
                                            "thresholds", factory=DiagnosticsConfig)

    def __post_init__(self) -> None:
        check(self.seed >= 0, "seed", "must be >= 0")

    @property
    def reads_synthetic(self) -> bool:
        """Whether the run reads `data.synthetic` (training or validating on arithmetic)."""
        return SYNTHETIC_SOURCE in (self.data.train, self.validation.data)


# --------------------------------------------------------------------------- building


def _coerce(value: Any, hint: Any, key: str) -> Any:
    """Convert a YAML value to the annotated type, or raise ConfigError naming `key`."""
    origin = typing.get_origin(hint)
    if origin in (typing.Union, types.UnionType):
        args = typing.get_args(hint)
        if value is None:
            check(type(None) in args, key, "must not be null")
            return None
        errors = []
        for arg in args:
            if arg is type(None):
                continue
            try:
                return _coerce(value, arg, key)
            except ConfigError as exc:
                errors.append(str(exc))
        raise ConfigError(errors[0] if errors else f"{key}: invalid value {value!r}")
    if origin is typing.Literal:
        names = typing.get_args(hint)
        check(value in names, key, f"{value!r} is not one of {list(names)}")
        return value
    if hint is AlgorithmConfig:  # the method's own type, chosen by `preset`
        check(isinstance(value, Mapping), key, f"expected a mapping, got {value!r}")
        return _build_algorithm(value, key)
    if dataclasses.is_dataclass(hint):
        check(isinstance(value, Mapping), key, f"expected a mapping, got {value!r}")
        return _build(hint, value, key)
    if origin is list:
        (item_hint,) = typing.get_args(hint)
        if isinstance(value, str):  # a comma string: "q_proj,v_proj"
            value = [part.strip() for part in value.split(",") if part.strip()]
        check(isinstance(value, list), key, f"expected a list (e.g. [a,b]), got {value!r}")
        items = []
        for i, item in enumerate(value):
            try:
                items.append(_coerce(item, item_hint, key))
            except ConfigError as exc:  # "key: item i: what is wrong"
                raise ConfigError(f"{key}: item {i}: {str(exc).removeprefix(key + ': ')}") from None
        return items
    if origin is dict:
        check(isinstance(value, Mapping), key, f"expected a mapping (e.g. {{a: 1}}), got {value!r}")
        for name in value:
            check(isinstance(name, str), key, f"keys must be strings, got {name!r}")
        return dict(value)
    if hint is bool:
        check(isinstance(value, bool), key, f"expected true/false, got {value!r}")
        return value
    if hint is int:
        check(
            isinstance(value, int) and not isinstance(value, bool),
            key,
            f"expected an integer, got {value!r}",
        )
        return value
    if hint is float:
        if isinstance(value, str):  # YAML 1.1 reads `1e-6` as a string
            try:
                number = float(value)
            except ValueError:
                raise ConfigError(f"{key}: expected a number, got {value!r}") from None
        else:
            check(
                isinstance(value, (int, float)) and not isinstance(value, bool),
                key,
                f"expected a number, got {value!r}",
            )
            number = float(value)
        check(math.isfinite(number), key, f"expected a finite number, got {value!r}")
        return number
    if hint is str:
        check(isinstance(value, str), key, f"expected a string, got {value!r}")
        return value
    raise ConfigError(f"{key}: unsupported type {hint!r}")  # pragma: no cover


def _build(cls: type, data: Mapping[str, Any], prefix: str = "") -> Any:
    hints = typing.get_type_hints(cls)
    names = [f.name for f in dataclasses.fields(cls)]
    kwargs = {}
    for key, value in data.items():
        dotted = f"{prefix}.{key}" if prefix else str(key)
        if key not in names:
            raise ConfigError(f"unknown key {dotted!r}; valid keys here: {', '.join(names)}")
        kwargs[key] = _coerce(value, hints[key], dotted)
    try:
        return cls(**kwargs)
    except ConfigError:
        raise
    except (ValueError, TypeError) as exc:  # pragma: no cover - defensive: sections raise ConfigError
        raise ConfigError(f"{prefix or 'config'}: {exc}") from None


def _build_algorithm(data: Mapping[str, Any], prefix: str = "algorithm") -> AlgorithmConfig:
    """The config type of the preset `data` names, built from `data`; another preset's
    option is dropped at its default and refused otherwise (module docstring)."""
    name = data.get("preset", MGrpoConfig.preset)
    try:
        cls = PRESETS.get(name).config
    except UnknownNameError as exc:
        raise ConfigError(f"{prefix}.preset: {exc}") from None
    own = {f.name for f in dataclasses.fields(cls)}
    kept: dict[str, Any] = {}
    for key, value in data.items():
        if key in own:
            kept[key] = value
            continue
        owners = [(entry.name, f) for entry in map(PRESETS.get, PRESETS.names())
                  for f in dataclasses.fields(entry.config) if f.name == key]
        dotted = f"{prefix}.{key}"
        if not owners:
            raise ConfigError(f"unknown key {dotted!r}; valid keys here (preset {name}): "
                              f"{', '.join(sorted(own))}")
        other, declared = owners[0]
        default = (declared.default_factory() if declared.default_factory is not dataclasses.MISSING
                   else declared.default)
        hint = typing.get_type_hints(PRESETS.get(other).config)[key]
        if _coerce(value, hint, dotted) == default:
            continue  # the option's default: this preset runs as it would without it
        raise ConfigError(
            f"{dotted}: preset {name} does not read it (an option of "
            f"{', '.join(sorted({p for p, _ in owners}))}); remove it or choose that preset")
    return _build(cls, kept, prefix)


def algorithm_config(**options: Any) -> AlgorithmConfig:
    """The `algorithm` section from keyword options, as a recipe would give them
    (`algorithm_config(preset="srt", rollouts=8)`); ConfigError as `config_from_dict`."""
    return _build_algorithm(options)


def config_from_dict(data: Mapping[str, Any]) -> Config:
    """Build and validate a Config from a nested mapping (unknown keys rejected)."""
    check(isinstance(data, Mapping), "config", "the recipe must be a YAML mapping")
    return _build(Config, data)


def config_to_dict(config: Config) -> dict[str, Any]:
    """The config as a nested mapping (what config.yaml holds). Sections the run does not
    read are left out: `data.synthetic` unless it trains or validates on arithmetic."""
    out = dataclasses.asdict(config)
    if not config.reads_synthetic:
        del out["data"]["synthetic"]
    return out


def flatten_config(config: Any, prefix: str = "") -> dict[str, Any]:
    """Nested mapping -> ``{"a.b.c": value}``; lists and scalars are leaves."""
    if not isinstance(config, dict):
        return {prefix: config} if prefix else {}
    out: dict[str, Any] = {}
    for key, value in config.items():
        dotted = f"{prefix}.{key}" if prefix else str(key)
        if isinstance(value, dict) and value:
            out.update(flatten_config(value, dotted))
        else:
            out[dotted] = value
    return out


def shipped_recipes() -> list[str]:
    """Names of the recipes shipped inside the package."""
    root = resources.files("mgrpo") / "recipes"
    return sorted(p.name[: -len(".yaml")] for p in root.iterdir() if p.name.endswith(".yaml"))


def _read_yaml(text: str, source: str) -> dict[str, Any]:
    # lazy, start-up: only (de)serialising a config needs yaml
    import yaml

    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise ConfigError(f"{source}: invalid YAML: {exc}") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"{source}: the recipe must be a YAML mapping, got {type(data).__name__}")
    return data


def load_recipe(recipe: str) -> dict[str, Any]:
    """Read a recipe (a YAML path or a shipped recipe name) into a nested dict."""
    path = Path(recipe)
    if path.suffix in (".yaml", ".yml") or path.exists():
        if not path.is_file():
            raise ConfigError(f"recipe file not found: {recipe}")
        return _read_yaml(path.read_text(encoding="utf-8"), str(path))
    if recipe not in shipped_recipes():
        raise ConfigError(
            f"unknown recipe {recipe!r}: not a file and not a shipped recipe "
            f"(shipped: {', '.join(shipped_recipes())})"
        )
    text = (resources.files("mgrpo") / "recipes" / f"{recipe}.yaml").read_text(encoding="utf-8")
    return _read_yaml(text, f"recipe {recipe}")


def apply_overrides(data: dict[str, Any], overrides: Sequence[str]) -> dict[str, Any]:
    """Apply `a.b.c=value` overrides (value parsed as YAML) to a nested dict copy."""

    # lazy, start-up: only (de)serialising a config needs yaml
    import yaml

    out = copy.deepcopy(data)
    for item in overrides:
        if "=" not in item:
            raise ConfigError(f"override {item!r} is not of the form key=value (e.g. optim.lr=2e-6)")
        key, raw = item.split("=", 1)
        key = key.strip()
        if not key or any(not part for part in key.split(".")):
            raise ConfigError(f"override {item!r} has an empty key")
        try:
            value = yaml.safe_load(raw) if raw.strip() else ""
        except yaml.YAMLError as exc:
            if raw.strip()[:1] in "[{":  # meant as a list / mapping: say what is wrong with it
                problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
                raise ConfigError(
                    f"override {item!r}: {key}: invalid list or mapping ({problem}); "
                    f"write lists as [a,b] and mappings as {{k: v}}"
                ) from None
            value = raw
        node = out
        parts = key.split(".")
        for part in parts[:-1]:
            child = node.get(part)
            if child is None:
                child = node[part] = {}
            if not isinstance(child, dict):
                raise ConfigError(f"override {item!r}: {part!r} is not a section")
            node = child
        node[parts[-1]] = value
    return out


def resolve_config(recipe: str | None, overrides: Sequence[str] = ()) -> Config:
    """Recipe (default `demo`) + dotted overrides -> validated Config."""
    data = load_recipe(recipe or "demo")
    return config_from_dict(apply_overrides(data, overrides))


def dump_config(config: Config) -> str:
    # lazy, start-up: only (de)serialising a config needs yaml
    import yaml

    return yaml.safe_dump(config_to_dict(config), sort_keys=False)
