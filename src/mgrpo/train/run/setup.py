"""Setting up a run: the run directory, the data, and the three models with their engines.

`build_run(cfg, run_dir, resume)` reads as the order that keeps `--resume` exact:
the algorithm (`train/algorithm.py`) and the data records, both checked before anything is
written or loaded (a bad reward, a missing file: a ConfigError naming the key, no run
directory touched) -> process group -> run directory (rank 0; resume checks the config) ->
seeds -> precision -> load the policy -> tokenize the prompts -> pick the model layout
(`mgrpo.train.layout.layouts`) -> the layout adapts the policy (LoRA: adapters in) ->
gradient checkpointing -> the layout builds the momentum model, the reference and the
generator copies -> optimizer and schedule -> engines (a vllm engine takes a copy of the
weights here, and again after every change).
"""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from mgrpo.answers import AnswerChecker
from mgrpo.config import Config, ConfigError
from mgrpo.core.schedule import warmup_cosine
from mgrpo.data.datasets import DatasetError, PromptRecord
from mgrpo.methods import AlgorithmSpec
from mgrpo.models.loading import load_model_and_tokenizer
from mgrpo.models.protocol import Tokenizer
from mgrpo.parallel import distributed as D
from mgrpo.rollout import RolloutEngine, make_engine
from mgrpo.rollout.base import stop_token_ids
from mgrpo.rollout.vllm_engine import EngineUnavailable
from mgrpo.seeds import VAL_SEED_OFFSET
from mgrpo.train.algorithm import resolve_algorithm
from mgrpo.train.layout.layouts import ModelLayout, pick_layout
from mgrpo.train.layout.lora import ScopedEngine
from mgrpo.train.layout.memory_budget import backward_bytes, preflight
from mgrpo.train.layout.precision import Precision, resolve_precision
from mgrpo.train.logs.alarm import CollapseAlarm
from mgrpo.train.run import faults
from mgrpo.train.run.errors import TrainingError
from mgrpo.train.run.prompt_set import PromptSet, build_prompt_set, load_records, with_twins
from mgrpo.train.run.run_dir import prepare_run_dir
from mgrpo.train.types import Roles, StepModels


@dataclass
class Run:
    """What the loop works on: the config, the algorithm, the models and the data."""

    cfg: Config
    spec: AlgorithmSpec
    run_dir: Path
    models: StepModels
    train_set: PromptSet
    val_records: list[PromptRecord]
    alarm: CollapseAlarm
    precision: Precision
    layout: ModelLayout


def lr_lambda(warmup_steps: int, total_steps: int, schedule: str,
              min_ratio: float) -> Callable[[int], float]:
    """Multiplier of the base lr at scheduler step s (0-based): linear warmup over
    `warmup_steps`, then cosine from 1 to `min_ratio` at `total_steps` (or constant);
    `mgrpo.core.schedule.warmup_cosine`."""
    constant = schedule == "constant"

    def fn(s: int) -> float:
        return warmup_cosine(s, warmup_steps, total_steps, min_ratio, constant=constant)

    return fn


def build_run(cfg: Config, run_dir: Path, resume: bool = False) -> Run:
    """Everything a run needs, in the order that keeps resume exact."""
    spec = resolve_algorithm(cfg.algorithm)
    train_records, val_records = load_data_records(cfg, spec)
    ctx = _init_distributed(cfg)
    _prepare_run_dir_on_rank0(ctx, cfg, run_dir, resume)
    if cfg.trainer.threads:
        torch.set_num_threads(cfg.trainer.threads)
    torch.manual_seed(cfg.seed)
    random.seed(cfg.seed)

    try:
        precision = resolve_precision(cfg, fsdp=ctx.fsdp)
    except ValueError as exc:  # PrecisionError, or a device that does not exist here
        raise TrainingError(str(exc)) from None
    policy, tokenizer = load_model_and_tokenizer(  # FSDP: the fp32 master loads on the host
        cfg.model.name, dtype=precision.load_dtype,
        device="cpu" if ctx.fsdp else cfg.model.device, seed=cfg.seed,
        tiny_hidden_size=cfg.model.tiny_hidden_size, tiny_layers=cfg.model.tiny_layers,
    )
    train_set = build_prompt_set(train_records, tokenizer, cfg.data, seed=cfg.seed,
                                 twins=spec.paraphrases)

    layout = pick_layout(cfg, precision, ctx, with_momentum=spec.uses_momentum_model)
    layout.adapt(policy)
    _check_static_memory(cfg, spec, layout, policy)  # before any copy is built or generated
    if cfg.model.gradient_checkpointing:
        # non-reentrant: recomputation works whether or not the block inputs require grad
        policy.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
        if layout.frozen_embeddings:  # checkpointed blocks need an input that requires grad
            policy.enable_input_require_grads()
    roles = layout.build(policy)
    optimizer, scheduler = _optimizer(cfg, policy)

    policy_engine, momentum_engine = _engines(cfg, layout, roles, policy, optimizer, tokenizer)
    models = StepModels.around(  # the layout's roles, plus the trained policy around them
        roles,
        policy=policy,
        policy_engine=policy_engine,
        momentum_engine=momentum_engine,
        optimizer=optimizer,
        scheduler=scheduler,
        checker=AnswerChecker(),
        tokenizer=tokenizer,
        stop_token_ids=_stop_token_ids(tokenizer, policy),
        dist=ctx,
    )
    faults.install(models)  # no-op unless MGRPO_FAULT is set (reliability tests)
    alarm = CollapseAlarm(cfg.diagnostics.alarm)
    return Run(cfg, spec, run_dir, models, train_set, val_records, alarm, precision, layout)


def _engines(cfg: Config, layout: ModelLayout, roles: Roles, policy: torch.nn.Module,
             optimizer: torch.optim.Optimizer, tokenizer: Tokenizer
             ) -> tuple[RolloutEngine, RolloutEngine | ScopedEngine | None]:
    """The policy's and the momentum model's rollout engines. Each follows the version of the
    weights it samples: the policy's is bumped by every optimizer step (a step hook), the
    momentum's by every EMA update. With `vllm` both share ONE vLLM engine, the momentum
    weights swapped in for its rollouts (docs/engines.md: measured against a second engine)."""
    vllm = cfg.model.vllm
    options: dict[str, Any] = dict(
        pad_token_id=tokenizer.pad_token_id, kv_cache_gb=cfg.generation.kv_cache_gb,
        gpu_memory_utilization=vllm.gpu_memory_utilization, sleep_mode=vllm.sleep_mode,
        enforce_eager=vllm.enforce_eager, seed=cfg.seed,
        keep_workspace=None if cfg.generation.keep_workspace else False)
    try:
        policy_engine = make_engine(cfg.model.engine, roles.policy_full or policy, **options)
        optimizer.register_step_post_hook(lambda *_: policy_engine.version.bump())
        momentum_engine = None
        if roles.momentum is not None:
            momentum_engine = layout.momentum_engine(make_engine(
                cfg.model.engine, roles.momentum.generator, version=roles.momentum.version,
                share_with=policy_engine, **options))
    except EngineUnavailable as exc:  # vllm missing, or a model it cannot run
        raise TrainingError(str(exc)) from None
    return policy_engine, momentum_engine


def _check_static_memory(cfg: Config, spec: AlgorithmSpec, layout: ModelLayout,
                         policy: torch.nn.Module) -> None:
    """Refuse (TrainingError) a layout whose static state, with what it holds through the
    backward (the kept KV workspace of one prompt's rollouts, the LM-head gradient
    temporaries: `memory_budget.backward_bytes`), does not fit on the device."""
    params = sum(p.numel() for p in policy.parameters())
    trainable = sum(p.numel() for p in policy.parameters() if p.requires_grad)
    precision = layout.precision
    mc = policy.config
    heads = mc.num_attention_heads
    graphs = cfg.model.engine == "fast" and precision.device.type == "cuda"
    backward = backward_bytes(
        layout.kind, rows=spec.group_size, layers=mc.num_hidden_layers,
        length=cfg.data.max_prompt_length + cfg.generation.max_new_tokens,
        kv_heads=getattr(mc, "num_key_value_heads", None) or heads,
        head_dim=getattr(mc, "head_dim", None) or mc.hidden_size // heads,
        vocab=mc.vocab_size, hidden=mc.hidden_size, compute=precision.compute.itemsize,
        master=precision.master.itemsize,
        keep_workspace=graphs and cfg.generation.keep_workspace)
    problem = preflight(layout.kind, precision.device, params=params, trainable=trainable,
                        world=layout.ctx.world_size, compute=precision.compute.itemsize,
                        master=precision.master.itemsize, momentum=layout.with_momentum,
                        reference=layout.with_reference, backward=backward)
    if problem:
        raise TrainingError(problem)


def _optimizer(cfg: Config, policy: torch.nn.Module
               ) -> tuple[torch.optim.Optimizer, torch.optim.lr_scheduler.LambdaLR]:
    """AdamW over the trainable parameters (LoRA: the adapters) and its lr schedule."""
    trainable = [p for p in policy.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(
        trainable, lr=cfg.optim.lr, betas=(cfg.optim.beta1, cfg.optim.beta2),
        eps=cfg.optim.eps, weight_decay=cfg.optim.weight_decay,
    )
    warmup = int(cfg.optim.warmup_ratio * cfg.trainer.max_steps)
    scheduler = torch.optim.lr_scheduler.LambdaLR(
        optimizer,
        lr_lambda(warmup, cfg.trainer.max_steps, cfg.optim.schedule, cfg.optim.min_lr_ratio),
    )
    return optimizer, scheduler


def _init_distributed(cfg: Config) -> D.DistContext:
    """The process group (or the single-process context), with the checks that need it."""
    dcfg = cfg.distributed
    ctx = D.init_distributed(backend=dcfg.backend, timeout_s=dcfg.timeout_s, fsdp=dcfg.fsdp,
                             device=cfg.model.device)
    D.local_slice(ctx, cfg.trainer.prompts_per_step)  # whole prompt groups per rank, or a clear error
    if ctx.fsdp and cfg.model.lora.r > 0:
        raise TrainingError("model.lora.r > 0 with FSDP is not supported; LoRA states are small: "
                            "use distributed.fsdp=false (replicated data parallel)")
    return ctx


def _prepare_run_dir_on_rank0(ctx: D.DistContext, cfg: Config, run_dir: Path,
                              resume: bool) -> None:
    """Rank 0 owns the run directory; the others learn its verdict (and raise too)."""
    problem, error = None, None
    if ctx.is_main:
        try:
            prepare_run_dir(cfg, run_dir, resume)
        except Exception as exc:  # noqa: BLE001 - re-raised below, after telling the others
            problem, error = f"{exc}", exc
    problem = D.broadcast_object(ctx, problem, stage="run directory setup")
    if error is not None:
        raise error
    if problem:
        raise TrainingError(f"rank 0 could not set up {run_dir}: {problem}")


def load_data_records(cfg: Config, spec: AlgorithmSpec
                      ) -> tuple[list[PromptRecord], list[PromptRecord]]:
    """The training and validation records (the latter empty without validation.data),
    read before the model loads and before the run directory is touched; a source that
    cannot be read is a ConfigError naming its key."""
    try:
        train_records = load_records(cfg.data, cfg.data.train, split="train", seed=cfg.seed)
    except (DatasetError, OSError, ValueError) as exc:
        raise ConfigError(f"data.train={cfg.data.train!r}: {exc}") from None
    if spec.paraphrases:  # co-rewarding-i: every question needs its rephrased twin
        try:
            train_records = with_twins(train_records, cfg.data)
        except ValueError as exc:
            raise ConfigError(str(exc)) from None
    if spec.needs_labels and any(r.answer is None for r in train_records):
        raise ConfigError(
            f"data.answer_field: preset {spec.name!r} trains on ground truth: every row of "
            f"{cfg.data.train} needs an answer in column {cfg.data.answer_field!r}")
    val_records: list[PromptRecord] = []
    if cfg.validation.data:
        try:
            val_records = load_records(cfg.data, cfg.validation.data, split="val",
                                       seed=cfg.seed + VAL_SEED_OFFSET,
                                       dataset_split=cfg.validation.split)
        except (DatasetError, OSError, ValueError) as exc:
            raise ConfigError(f"validation.data={cfg.validation.data!r}: {exc}") from None
        val_records = val_records[: cfg.validation.limit]
    return train_records, val_records


def _stop_token_ids(tokenizer: Tokenizer, model: nn.Module) -> tuple[int, ...]:
    ids = stop_token_ids(model, tokenizer)
    if not ids:
        raise TrainingError("the tokenizer defines no EOS token; rollouts would never stop")
    return ids

