"""The run configuration (docs/design.md §4 "Configs are data"): every name a recipe uses.

- `Config` (the root), `resolve_config` / `config_from_dict` / `dump_config`, dotted
  overrides: `mgrpo.config.recipe`;
- the sections (model, data, generation, optim, trainer, validation, distributed,
  diagnostics): `mgrpo.config.sections`;
- the `algorithm` section: the method's own config type (`mgrpo.methods`), built by
  `algorithm_config`;
- `ConfigError`, `field_docs` (every key's one description): `mgrpo.fields`.

Importing it never imports torch: a config error is reported in milliseconds.
"""

from mgrpo.config.recipe import (
    Config,
    algorithm_config,
    apply_overrides,
    config_from_dict,
    config_to_dict,
    dump_config,
    flatten_config,
    load_recipe,
    resolve_config,
    shipped_recipes,
)
from mgrpo.config.sections import (
    MATH_SUFFIX,
    TRACKERS,
    CollapseAlarmConfig,
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
)
from mgrpo.fields import ConfigError, field_docs
from mgrpo.methods import AlgorithmConfig, RewardTerm

__all__ = [
    "MATH_SUFFIX",
    "TRACKERS",
    "AlgorithmConfig",
    "CollapseAlarmConfig",
    "Config",
    "ConfigError",
    "DataConfig",
    "DiagnosticsConfig",
    "DistributedConfig",
    "GenerationConfig",
    "LoraConfig",
    "ModelConfig",
    "OptimConfig",
    "RewardTerm",
    "SyntheticConfig",
    "TrainerConfig",
    "ValidationConfig",
    "VllmConfig",
    "algorithm_config",
    "apply_overrides",
    "config_from_dict",
    "config_to_dict",
    "dump_config",
    "field_docs",
    "flatten_config",
    "load_recipe",
    "resolve_config",
    "shipped_recipes",
]
