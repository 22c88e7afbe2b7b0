"""Run configuration: nested frozen dataclasses, YAML recipes, dotted overrides.

A recipe is a YAML file (or the name of one shipped in `mgrpo/recipes/`) whose keys mirror
the dataclasses (`Config` here, its sections in `mgrpo.config_sections`, exported here too).
Unknown keys are rejected with the list of valid keys; every value is type-checked and
range-checked in `__post_init__` with a message naming the dotted key.
Command-line overrides use dotted keys: `algorithm.rollouts=16 optim.lr=2e-6`.

Derived values (the policy/momentum split of G, what each preset switches on) are computed in
`mgrpo.train.presets`, never written back into the config.
"""

from __future__ import annotations

import copy
import dataclasses
import math
import types
import typing
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

from mgrpo.config_algorithm import (  # noqa: F401 - re-exported: mgrpo.config names every section
    AlgorithmConfig,
    RewardTerm,
    default_momentum_rollouts,
)
from mgrpo.config_sections import (  # noqa: F401 - re-exported: mgrpo.config names every section
    DOC,
    MATH_SUFFIX,
    TRACKERS,
    ConfigError,
    DataConfig,
    DiagnosticsConfig,
    DistributedConfig,
    GenerationConfig,
    LoraConfig,
    ModelConfig,
    OptimConfig,
    SyntheticConfig,
    TrainerConfig,
    ValidationConfig,
    VllmConfig,
    _check,
    field_docs,
)


@dataclass(frozen=True)
class Config:
    """A complete, resolved run configuration."""

    seed: int = 0
    model: ModelConfig = field(default_factory=ModelConfig)
    data: DataConfig = field(default_factory=DataConfig)
    algorithm: AlgorithmConfig = field(default_factory=AlgorithmConfig)
    generation: GenerationConfig = field(default_factory=GenerationConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    trainer: TrainerConfig = field(default_factory=TrainerConfig)
    validation: ValidationConfig = field(default_factory=ValidationConfig)
    distributed: DistributedConfig = field(default_factory=DistributedConfig)
    diagnostics: DiagnosticsConfig = field(default_factory=DiagnosticsConfig)

    def __post_init__(self) -> None:
        _check(self.seed >= 0, "seed", "must be >= 0")


# --------------------------------------------------------------------------- building


def _coerce(value: Any, hint: Any, key: str) -> Any:
    """Convert a YAML value to the annotated type, or raise ConfigError naming `key`."""
    origin = typing.get_origin(hint)
    if origin in (typing.Union, types.UnionType):
        args = typing.get_args(hint)
        if value is None:
            _check(type(None) in args, key, "must not be null")
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
    if dataclasses.is_dataclass(hint):
        _check(isinstance(value, Mapping), key, f"expected a mapping, got {value!r}")
        return _build(hint, value, key)
    if origin is list:
        (item_hint,) = typing.get_args(hint)
        if isinstance(value, str):  # a comma string: "q_proj,v_proj"
            value = [part.strip() for part in value.split(",") if part.strip()]
        _check(isinstance(value, list), key, f"expected a list (e.g. [a,b]), got {value!r}")
        items = []
        for i, item in enumerate(value):
            try:
                items.append(_coerce(item, item_hint, key))
            except ConfigError as exc:  # "key: item i: what is wrong"
                raise ConfigError(f"{key}: item {i}: {str(exc).removeprefix(key + ': ')}") from None
        return items
    if origin is dict:
        _check(isinstance(value, Mapping), key, f"expected a mapping (e.g. {{a: 1}}), got {value!r}")
        for name in value:
            _check(isinstance(name, str), key, f"keys must be strings, got {name!r}")
        return dict(value)
    if hint is bool:
        _check(isinstance(value, bool), key, f"expected true/false, got {value!r}")
        return value
    if hint is int:
        _check(
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
            _check(
                isinstance(value, (int, float)) and not isinstance(value, bool),
                key,
                f"expected a number, got {value!r}",
            )
            number = float(value)
        _check(math.isfinite(number), key, f"expected a finite number, got {value!r}")
        return number
    if hint is str:
        _check(isinstance(value, str), key, f"expected a string, got {value!r}")
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


def config_from_dict(data: Mapping[str, Any]) -> Config:
    """Build and validate a Config from a nested mapping (unknown keys rejected)."""
    _check(isinstance(data, Mapping), "config", "the recipe must be a YAML mapping")
    return _build(Config, data)


def config_to_dict(config: Config) -> dict[str, Any]:
    return dataclasses.asdict(config)


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
