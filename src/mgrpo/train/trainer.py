"""The training loop: models, data order, schedule, validation, logging, checkpoints, resume.

`train(cfg, output_dir)` builds the three models of M-GRPO (policy; momentum = EMA master +
generator; frozen reference, only when kl_coef > 0), then calls `step.train_step` once per
step. Everything that decides a step's outcome is a pure function of (seed, step) plus the
restored model/optimizer/scheduler state, so `--resume` continues bit-exactly on CPU.

Run directory:
    config.yaml          the fully resolved config
    metrics.jsonl        one JSON object per step (flushed + fsynced each step)
    checkpoints/step-N/  see `checkpoint.py`
    tensorboard/         the same scalars for TensorBoard (trainer.report_to)
    trackers.json        W&B / MLflow run ids, so --resume continues those runs (`trackers.py`)
"""

from __future__ import annotations

import json
import math
import os
import random
import signal
import sys
import threading
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from mgrpo.answers import AnswerChecker
from mgrpo.config import Config, ConfigError, config_from_dict, config_to_dict, dump_config
from mgrpo.data.datasets import PromptRecord
from mgrpo.models.loading import load_model_and_tokenizer
from mgrpo.parallel import distributed as D
from mgrpo.rollout import make_engine
from mgrpo.rollout.base import stop_token_ids
from mgrpo.train import faults
from mgrpo.train.alarm import CollapseAlarm
from mgrpo.train.checkpoint import (
    latest_checkpoint,
    load_tensors,
    new_tmp_dir,
    optimizer_from_files,
    read_json,
    save_checkpoint,
)
from mgrpo.train.lora import (
    LoraExport,
    LoraMomentum,
    ScopedEngine,
    apply_lora,
    load_trainable_state,
    trainable_state,
)
from mgrpo.train.momentum import MomentumModel, ShardedMomentum
from mgrpo.train.precision import Precision, copy_refresher, inference_copy, resolve_precision
from mgrpo.train.presets import AlgorithmSpec, resolve_algorithm
from mgrpo.train.prompts import VAL_SEED_OFFSET, PromptSet, build_prompt_set, load_records
from mgrpo.train.step import NonFiniteLossError, StepBatch, StepModels, train_step
from mgrpo.train.trackers import Trackers  # W&B / MLflow (trainer.report_to), rank 0 only
from mgrpo.train.validation import run_validation

MASTER_FILE = "master.safetensors"  # fp32 master weights of a mixed-precision checkpoint

# Config keys allowed to differ between the original run and a `--resume`.
RESUME_MUTABLE = ("trainer.max_steps", "trainer.save_every", "trainer.eval_every",
                  "trainer.progress", "trainer.keep_last", "trainer.threads", "trainer.stop_after",
                  "distributed.timeout_s", "distributed.backend", "distributed.fsdp",
                  "trainer.report_to")


class TrainingError(RuntimeError):
    """The run cannot continue (bad resume, repeated NaN losses, ...); message says why."""


class TrainingInterrupted(KeyboardInterrupt):
    """SIGTERM/SIGINT stopped the run; `signum` is the signal, the message one line."""

    def __init__(self, message: str, signum: int) -> None:
        super().__init__(message)
        self.signum = signum


class _StopSignals:
    """SIGTERM/SIGINT handling for the loop (main thread only; elsewhere a no-op).

    First signal: set `signum`; the loop finishes the current step, checkpoints it and stops.
    Second signal: abandon the step at once (TrainingInterrupted raised from the handler; a
    checkpoint write in progress is discarded, the previous one stays).
    """

    SIGNALS = (signal.SIGTERM, signal.SIGINT)

    def __init__(self) -> None:
        self.signum: int | None = None
        self._previous: dict[int, Any] = {}

    def __enter__(self) -> _StopSignals:
        if threading.current_thread() is threading.main_thread():
            for sig in self.SIGNALS:
                self._previous[sig] = signal.signal(sig, self._handle)
        return self

    def __exit__(self, *exc: object) -> None:
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)

    def _handle(self, signum: int, frame: Any) -> None:
        name = signal.Signals(signum).name
        if self.signum is not None:
            raise TrainingInterrupted(
                f"{name} again: current step abandoned; the last complete checkpoint is kept", signum
            )
        self.signum = signum
        print(f"mgrpo: {name} received; finishing the current step, then checkpointing "
              f"(send it again to abandon the step)", file=sys.stderr, flush=True)

    def interrupted(self, what: str) -> TrainingInterrupted:
        assert self.signum is not None
        name = signal.Signals(self.signum).name
        return TrainingInterrupted(f"stopped by {name} {what}; --resume continues", self.signum)


# ------------------------------------------------------------------------------ schedule


def lr_lambda(warmup_steps: int, total_steps: int, schedule: str, min_ratio: float):
    """Multiplier of the base lr at scheduler step s (0-based): linear warmup over
    `warmup_steps`, then cosine from 1 to `min_ratio` at `total_steps` (or constant)."""

    def fn(s: int) -> float:
        if warmup_steps > 0 and s < warmup_steps:
            return (s + 1) / warmup_steps
        if schedule == "constant":
            return 1.0
        span = max(total_steps - warmup_steps, 1)
        progress = min(max(s - warmup_steps, 0) / span, 1.0)
        return min_ratio + (1 - min_ratio) * 0.5 * (1 + math.cos(math.pi * progress))

    return fn


# ------------------------------------------------------------------------------- metrics


class MetricsLog:
    """Appends one JSON line per step (fsynced) and mirrors scalars to TensorBoard. The
    TensorBoard writer (an import and an event file, ~0.2 s) opens at the first write, so it
    does not delay the first step."""

    def __init__(self, run_dir: Path, tensorboard: bool = True) -> None:
        self.path = run_dir / "metrics.jsonl"
        self.tensorboard_dir = run_dir / "tensorboard" if tensorboard else None
        self.writer = None

    def _open_writer(self) -> None:
        directory, self.tensorboard_dir = self.tensorboard_dir, None  # one attempt only
        try:
            # lazy, start-up: tensorboard only when a run logs to it
            from torch.utils.tensorboard import SummaryWriter

            self.writer = SummaryWriter(str(directory))
        except ImportError:  # pragma: no cover - tensorboard is a dependency
            warnings.warn("tensorboard not installed; skipping TensorBoard logs", stacklevel=2)

    def truncate_after(self, step: int) -> None:
        """Drop lines past `step` (a resumed run rewrites them)."""
        if not self.path.exists():
            return
        keep = []
        for line in self.path.read_text(encoding="utf-8").splitlines():
            try:
                if json.loads(line)["step"] <= step:
                    keep.append(line)
            except (ValueError, KeyError):
                continue  # a partial last line from a killed run
        tmp = self.path.with_suffix(".jsonl.tmp")  # atomic: a kill here must not lose lines
        tmp.write_text("".join(x + "\n" for x in keep), encoding="utf-8")
        os.replace(tmp, self.path)

    def read(self) -> list[dict[str, Any]]:
        """Complete lines written so far (a partial last line is ignored)."""
        if not self.path.exists():
            return []
        out = []
        for line in self.path.read_text(encoding="utf-8").splitlines():
            try:
                out.append(json.loads(line))
            except ValueError:
                continue
        return out

    def write(self, metrics: dict[str, Any]) -> None:
        clean = {k: (None if isinstance(v, float) and not math.isfinite(v) else v) for k, v in metrics.items()}
        faults.hit("metrics_write", self.path)
        with open(self.path, "a", encoding="utf-8") as fh:
            fh.write(json.dumps(clean) + "\n")
            fh.flush()
            os.fsync(fh.fileno())
        if self.tensorboard_dir is not None:
            self._open_writer()
        if self.writer is not None:
            for key, value in clean.items():
                if key != "step" and isinstance(value, (int, float)) and not isinstance(value, bool):
                    self.writer.add_scalar(key, value, metrics["step"])
            self.writer.flush()

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()


# --------------------------------------------------------------------------------- setup


@dataclass
class Run:
    cfg: Config
    spec: AlgorithmSpec
    run_dir: Path
    models: StepModels
    train_set: PromptSet
    val_records: list[PromptRecord]
    alarm: Any
    precision: Precision | None = None


def _config_diff(a: dict, b: dict, prefix: str = "", defaults: dict | None = None) -> list[str]:
    """Dotted keys whose values differ. A key missing from `a` (a run saved before the key
    existed) does not count when `b` holds its default (`defaults`, same nesting)."""
    out = []
    for key in sorted(set(a) | set(b)):
        dotted = f"{prefix}{key}"
        va, vb = a.get(key), b.get(key)
        default = (defaults or {}).get(key)
        if isinstance(va, dict) and isinstance(vb, dict):
            out += _config_diff(va, vb, dotted + ".", default if isinstance(default, dict) else None)
        elif key not in a and defaults is not None and key in defaults and vb == default:
            continue
        elif va != vb:
            out.append(dotted)
    return out


def _prepare_run_dir(cfg: Config, run_dir: Path, resume: bool) -> None:
    config_path = run_dir / "config.yaml"
    if resume and not config_path.exists():
        if run_dir.exists() and any(p.name != "tensorboard" for p in run_dir.iterdir()):
            raise TrainingError(f"--resume: {run_dir} has no config.yaml (not a run directory)")
        # killed before the run directory was set up: nothing to resume, start fresh
        print(f"mgrpo: --resume: {run_dir} holds no run yet; starting a new one", file=sys.stderr)
        resume = False
    if resume:
        # lazy, start-up: only (de)serialising a config needs yaml
        import yaml

        saved = yaml.safe_load(config_path.read_text(encoding="utf-8"))
        try:  # keys added since the run started take their defaults
            saved = config_to_dict(config_from_dict(saved))
        except (ConfigError, TypeError):
            pass  # compared as written: the differing keys are named below
        diff = _config_diff(saved, config_to_dict(cfg), defaults=config_to_dict(Config()))
        changed = [k for k in diff if k not in RESUME_MUTABLE]
        if changed:
            raise TrainingError(
                f"--resume: the config differs from {config_path} in {', '.join(changed)}; "
                f"only {', '.join(RESUME_MUTABLE)} may change on resume"
            )
    elif (run_dir / "metrics.jsonl").exists() or (run_dir / "checkpoints").exists():
        raise TrainingError(
            f"{run_dir} already holds a run; pass --resume to continue it or choose another -o"
        )
    run_dir.mkdir(parents=True, exist_ok=True)
    tmp = config_path.with_suffix(".yaml.tmp")
    tmp.write_text(dump_config(cfg), encoding="utf-8")
    os.replace(tmp, config_path)


def _stop_token_ids(tokenizer: Any, model: Any) -> tuple[int, ...]:

    ids = stop_token_ids(model, tokenizer)
    if not ids:
        raise TrainingError("the tokenizer defines no EOS token; rollouts would never stop")
    return ids


def build_run(cfg: Config, run_dir: Path, resume: bool = False) -> Run:
    """Everything a run needs, in the order that keeps resume exact."""

    spec = resolve_algorithm(cfg.algorithm)
    dcfg = cfg.distributed
    ctx = D.init_distributed(backend=dcfg.backend, timeout_s=dcfg.timeout_s, fsdp=dcfg.fsdp,
                             device=cfg.model.device)
    D.local_slice(ctx, cfg.trainer.prompts_per_step)  # whole prompt groups per rank, or a clear error
    if ctx.fsdp and cfg.model.lora.r > 0:
        raise TrainingError("model.lora.r > 0 with FSDP is not supported; LoRA states are small: "
                            "use distributed.fsdp=false (replicated data parallel)")
    problem, error = None, None
    if ctx.is_main:  # rank 0 owns the run directory; the others learn its verdict
        try:
            _prepare_run_dir(cfg, run_dir, resume)
        except Exception as exc:  # noqa: BLE001 - re-raised below, after telling the others
            problem, error = f"{exc}", exc
    problem = D.broadcast_object(ctx, problem, stage="run directory setup")
    if error is not None:
        raise error
    if problem:
        raise TrainingError(f"rank 0 could not set up {run_dir}: {problem}")
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
    train_records = load_records(cfg.data, cfg.data.train, split="train", seed=cfg.seed)
    if spec.needs_labels and any(r.answer is None for r in train_records):
        raise TrainingError(
            f"preset {spec.name!r} trains on ground truth: every row of {cfg.data.train} needs "
            f"data.answer_field ({cfg.data.answer_field!r})"
        )
    train_set = build_prompt_set(train_records, tokenizer, cfg.data, seed=cfg.seed)
    val_records: list[PromptRecord] = []
    if cfg.validation.data:
        val_records = load_records(cfg.data, cfg.validation.data, split="val",
                                   seed=cfg.seed + VAL_SEED_OFFSET, dataset_split=cfg.validation.split)
        val_records = val_records[: cfg.validation.limit]

    reference, reference_scope, policy_full, after_update, lora_export = None, None, None, None, None
    if cfg.model.lora.r > 0:  # adapters train; base shared by policy, momentum and reference

        peft_model = apply_lora(policy, cfg.model.lora)
        for p in policy.parameters():  # adapters: the master dtype (peft makes them fp32)
            if p.requires_grad:
                p.data = p.data.to(precision.master)
        lora_export = LoraExport(policy, peft_model, cfg.model.lora.export)
        if cfg.algorithm.kl_coef > 0:
            reference, reference_scope = policy, peft_model.disable_adapter
    elif cfg.algorithm.kl_coef > 0 and not ctx.fsdp:
        reference = inference_copy(policy, precision.compute)
    if cfg.model.gradient_checkpointing:
        # non-reentrant: recomputation works whether or not the block inputs require grad
        policy.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
        if lora_export is not None:  # frozen embeddings: let checkpointed blocks see a grad input
            policy.enable_input_require_grads()
    train_autocast = None
    if ctx.fsdp:  # shard policy + reference; unsharded generator copies for rollouts
        sharded = D.shard_run_models(ctx, policy, gen_dtype=precision.compute,
                                     with_reference=cfg.algorithm.kl_coef > 0,
                                     with_momentum=spec.uses_momentum_model,
                                     device=precision.device)
        reference, policy_full = sharded.reference, sharded.policy_full
        momentum = None
        if sharded.momentum_generator is not None:
            momentum = ShardedMomentum(policy, sharded.momentum_generator, ctx)
        after_update = D.policy_refresher(ctx, policy, policy_full)
    elif lora_export is not None:
        momentum = LoraMomentum(policy) if spec.uses_momentum_model else None
    elif precision.mixed:  # fp32 master trains; bf16 copies generate, score and refer
        policy_full = inference_copy(policy, precision.compute)
        after_update = copy_refresher(policy, policy_full)
        train_autocast = precision.compute
        momentum = (MomentumModel(policy, generator_dtype=precision.compute)
                    if spec.uses_momentum_model else None)
    else:
        momentum = MomentumModel(policy) if spec.uses_momentum_model else None
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
    pad = tokenizer.pad_token_id
    momentum_engine = None
    if momentum is not None:
        momentum_engine = make_engine(cfg.model.engine, momentum.generator, pad_token_id=pad,
                                      kv_cache_gb=cfg.generation.kv_cache_gb)
        if lora_export is not None:  # same model, momentum adapters swapped in per call

            momentum_engine = ScopedEngine(momentum_engine, momentum.swapped_in)
    models = StepModels(
        policy=policy,
        policy_engine=make_engine(cfg.model.engine, policy_full or policy, pad_token_id=pad,
                                  kv_cache_gb=cfg.generation.kv_cache_gb),
        momentum=momentum,
        momentum_engine=momentum_engine,
        reference=reference,
        optimizer=optimizer,
        scheduler=scheduler,
        checker=AnswerChecker(),
        tokenizer=tokenizer,
        stop_token_ids=_stop_token_ids(tokenizer, policy),
        dist=ctx,
        policy_full=policy_full,
        reference_scope=reference_scope,
        after_update=after_update,
        lora_export=lora_export,
        train_autocast=train_autocast,
    )
    faults.install(models)  # no-op unless MGRPO_FAULT is set (reliability tests)
    return Run(cfg, spec, run_dir, models, train_set, val_records,
               CollapseAlarm(cfg.diagnostics.alarm), precision)


def _restore(run: Run, ckpt: Path) -> dict[str, Any]:
    """Load policy/momentum/optimizer/scheduler/RNG from a verified checkpoint."""
    models = run.models
    if models.dist.fsdp:  # sharded policy / optimizer / momentum, resharded to this world size
        D.load_sharded(models.dist, ckpt, models.policy, models.optimizer, models.momentum)
        models.after_update()  # refresh the generator copy
    else:
        _restore_replicated(models, ckpt)
    state = read_json(ckpt / "trainer_state.json")
    sched = dict(state["scheduler"])
    sched["lr_lambdas"] = [None] * len(models.optimizer.param_groups)
    models.scheduler.load_state_dict(sched)
    torch.set_rng_state(load_tensors(ckpt / "rng.safetensors")["torch"])
    random.setstate(tuple(_tuplify(state["python_rng"])))
    return state


def _restore_replicated(models: StepModels, ckpt: Path) -> None:
    # lazy, start-up: safetensors only for checkpoint I/O
    from safetensors.torch import load_file

    if models.lora_export is not None:  # base from model.name; adapters from the checkpoint

        load_trainable_state(models.policy, load_tensors(ckpt / "lora.safetensors"), ckpt)
    elif (ckpt / MASTER_FILE).is_file():  # mixed precision: the fp32 master, then its copy
        master = load_tensors(ckpt / MASTER_FILE)
        names = [n for n, _ in models.policy.named_parameters()]
        if sorted(master) != sorted(names):
            raise TrainingError(f"{ckpt / MASTER_FILE}: master weights do not match the model "
                                f"(missing {sorted(set(names) - set(master))[:3]}, "
                                f"unexpected {sorted(set(master) - set(names))[:3]})")
        with torch.no_grad():
            for name, p in models.policy.named_parameters():
                p.copy_(master[name].to(p.dtype))
    else:
        weights = {}
        for shard in sorted(ckpt.glob("model*.safetensors")):
            weights.update(load_file(str(shard)))
        missing, unexpected = models.policy.load_state_dict(weights, strict=False)
        tied = {k for k in missing if "lm_head" in k and getattr(models.policy.config, "tie_word_embeddings", False)}
        if set(missing) - tied or unexpected:
            raise TrainingError(f"{ckpt}: policy weights do not match the model "
                                f"(missing {sorted(set(missing) - tied)[:3]}, unexpected {unexpected[:3]})")
    if models.after_update is not None:  # mixed precision: the bf16 copy from the master
        models.after_update()
    if models.momentum is not None:
        models.momentum.load_state_dict(load_tensors(ckpt / "momentum.safetensors"))
    if not (ckpt / "optimizer.json").is_file():
        raise TrainingError(f"{ckpt}: no optimizer.json; it was written with FSDP "
                            f"(resume it with distributed.fsdp=true)")
    meta = read_json(ckpt / "optimizer.json")
    models.optimizer.load_state_dict(
        optimizer_from_files(load_tensors(ckpt / "optimizer.safetensors"), meta)
    )


def _warn_precision_change(run: Run, saved: dict[str, str] | None, ckpt: Path) -> None:
    """Say so when `auto` device/dtype resolve differently from the run being resumed."""
    if saved is None or run.precision is None:
        return
    now = run.precision.describe()
    changed = [f"{k} {saved[k]} -> {now[k]}" for k in now if k in saved and saved[k] != now[k]]
    if changed:
        message = (f"mgrpo: WARNING: resuming {ckpt} with different precision/device "
                   f"({', '.join(changed)}; model.dtype={run.cfg.model.dtype}, "
                   f"model.device={run.cfg.model.device}); the run continues, not bit-exactly")
        warnings.warn(message, stacklevel=2)
        D.rank_print(run.models.dist, message)


def _tuplify(x: Any) -> Any:
    return tuple(_tuplify(v) for v in x) if isinstance(x, list) else x


def _save(run: Run, step: int, extra: dict[str, Any]) -> Path:

    models, ctx = run.models, run.models.dist
    root = run.run_dir / "checkpoints"
    sched = {k: v for k, v in models.scheduler.state_dict().items() if k != "lr_lambdas"}
    state = {"step": step, "scheduler": sched, "python_rng": random.getstate(), **extra}
    extra_tensors = {"rng.safetensors": {"torch": torch.get_rng_state()}}
    lora_export = models.lora_export
    if lora_export is not None:

        extra_tensors["lora.safetensors"] = trainable_state(models.policy)
    mixed = run.precision is not None and run.precision.mixed
    if mixed:  # the HF directory holds the bf16 copy (= master cast); resume reads the master
        extra_tensors[MASTER_FILE] = {n: p.detach().cpu().contiguous()
                                      for n, p in models.policy.named_parameters()}
    if run.precision is not None:
        state["precision"] = run.precision.describe()
    tmp = None
    if ctx.fsdp:  # every rank writes its shards into rank 0's temp dir, then rank 0 finishes
        tmp = D.broadcast_object(ctx, new_tmp_dir(root, step) if ctx.is_main else None)
        D.save_sharded(ctx, tmp, models.policy, models.optimizer, models.momentum)
        D.barrier(ctx, "sharded checkpoint save")
    path = root / f"step-{step}"
    if ctx.is_main:
        path = save_checkpoint(
            root,
            step,
            model=models.policy_full if (ctx.fsdp or mixed) else (lora_export or models.policy),
            tokenizer=models.tokenizer,
            optimizer=None if ctx.fsdp else models.optimizer,
            trainer_state=state,
            momentum=models.momentum.state_dict() if models.momentum and not ctx.fsdp else None,
            keep_last=run.cfg.trainer.keep_last,
            extra_tensors=extra_tensors,
            tmp_dir=tmp,
        )
    D.barrier(ctx, "checkpoint")  # nobody runs ahead of a checkpoint rank 0 is still writing
    return path


# ------------------------------------------------------------------------------ the loop


def train(cfg: Config, run_dir: str | Path, *, resume: bool = False) -> Path:
    """Run (or resume) training; return the run directory.

    SIGTERM/SIGINT (main thread): the current step finishes and is checkpointed, then
    TrainingInterrupted (a KeyboardInterrupt) is raised; a second signal abandons the step.
    A signal during the last step lets the run finish normally."""
    with _StopSignals() as signals:
        return _train(cfg, run_dir, resume=resume, signals=signals)


def _train(cfg: Config, run_dir: str | Path, *, resume: bool, signals: _StopSignals) -> Path:

    run_dir = Path(run_dir)
    run = build_run(cfg, run_dir, resume)
    ctx = run.models.dist  # rank 0 writes metrics, TensorBoard and checkpoints
    log = MetricsLog(run_dir, tensorboard=ctx.is_main and "tensorboard" in cfg.trainer.report_to)
    start, bad_steps = 0, 0
    summary: dict[str, Any] = {}
    if resume:
        ckpt = latest_checkpoint(run_dir / "checkpoints")
        if ckpt is None:
            D.rank_print(ctx, f"mgrpo: no complete checkpoint in {run_dir}; starting from step 0")
        else:
            state = _restore(run, ckpt)
            _warn_precision_change(run, state.get("precision"), ckpt)
            start, bad_steps = state["step"], state.get("bad_steps", 0)
            summary = state.get("summary", {})
            D.rank_print(ctx, f"mgrpo: resumed from {ckpt} (step {start})")
    if ctx.is_main:
        log.truncate_after(start if start else -1)  # a run restarted at 0 redoes its step-0 row
    D.barrier(ctx, "resume")
    for past in log.read():  # rebuild the alarm's state from the steps already run
        run.alarm.update(past)
    if start == 0 and run.val_records:
        summary["before"] = run_validation(run, step=0)
        # step-0 row: the untrained policy's validation, so curves and "best" start at 0
        row = {"step": 0, **{f"val/{k}": v for k, v in summary["before"].items()}}
        run.alarm.update(row)
        if ctx.is_main:
            log.write(row)
    if start >= cfg.trainer.max_steps:
        print(f"mgrpo: {run_dir} is already at step {start} >= trainer.max_steps", file=sys.stderr)


    trackers = Trackers(cfg.trainer.report_to, config_to_dict(cfg), run_dir, enabled=ctx.is_main,
                        run_name=cfg.trainer.run_name, project=cfg.trainer.project)
    progress = _progress(cfg, start, enabled=ctx.is_main)
    try:
        for step in range(start + 1, cfg.trainer.max_steps + 1):
            # arrived while loading or validating (several ranks: agreed on after the step)
            if signals.signum is not None and ctx.world_size == 1:
                raise signals.interrupted(f"before step {step}")
            records, prompt_ids = run.train_set.batch(step, cfg.trainer.prompts_per_step)
            mine = D.local_slice(ctx, len(records))  # this rank's whole prompt groups
            batch = StepBatch(prompt_ids=prompt_ids[mine.start:mine.stop],
                              answers=[r.answer for r in records[mine.start:mine.stop]],
                              prompt_offset=mine.start, global_prompts=len(records))
            try:
                metrics = train_step(run.models, batch, cfg, run.spec, step)
                bad_steps = 0
            except NonFiniteLossError as exc:
                bad_steps += 1
                run.models.scheduler.step()
                metrics = {"train/skipped": 1, "train/skip_reason": str(exc)}
                print(f"mgrpo: {exc}; update skipped ({bad_steps} in a row)", file=sys.stderr)
                if bad_steps >= cfg.trainer.max_bad_steps:
                    raise TrainingError(
                        f"{bad_steps} consecutive non-finite losses (last at step {step}); "
                        f"stopping. Lower optim.lr or check the data."
                    ) from None
            metrics = {"step": step, **metrics, "data/overlong_prompts": run.train_set.overlong}
            is_last = step == cfg.trainer.max_steps
            if run.val_records and (
                is_last or (cfg.trainer.eval_every and step % cfg.trainer.eval_every == 0)
            ):
                val = run_validation(run, step=step)
                metrics.update({f"val/{k}": v for k, v in val.items()})
                if is_last:
                    summary["after"] = val
            alarm = run.alarm.update(metrics)
            metrics.update(alarm.as_metrics() if alarm is not None else run.alarm.quiet_metrics())
            if alarm is not None:
                if alarm.first:
                    progress.write(f"mgrpo: collapse alarm at step {step}: {alarm.reason}")
            if ctx.is_main:
                log.write(metrics)
                trackers.log(metrics)
            progress.update(1)
            progress.set_postfix(_postfix(metrics), refresh=False)
            stop = alarm is not None and cfg.trainer.alarm_action == "stop"
            pause = cfg.trainer.stop_after is not None and step >= cfg.trainer.stop_after
            signalled = signals.signum is not None and not is_last
            if ctx.world_size > 1:  # a signal on any rank stops every rank at the same step
                signalled = D.all_reduce(ctx, [float(signalled)], "max", stage="stop signal")[0] > 0
                if signalled and signals.signum is None:
                    signals.signum = signal.SIGTERM  # another rank was signalled
            if is_last or stop or pause or signalled or (
                cfg.trainer.save_every and step % cfg.trainer.save_every == 0
            ):
                _save(run, step, {"bad_steps": bad_steps, "summary": summary})
            if stop:
                raise TrainingError(f"stopped by the collapse alarm at step {step}: {alarm.reason}")
            if signalled:
                raise signals.interrupted(f"after step {step} (checkpointed)")
            if pause and not is_last:
                progress.write(f"mgrpo: stopping after step {step} (trainer.stop_after); --resume continues")
                break
    finally:
        progress.close()
        log.close()
        trackers.close()
        run.models.checker.close()
    if ctx.is_main:
        _print_summary(run, summary)
    D.shutdown(ctx)
    return run_dir


def _progress(cfg: Config, start: int, enabled: bool = True):
    # lazy, start-up: tqdm only for the progress bar
    from tqdm.auto import tqdm

    return tqdm(
        total=cfg.trainer.max_steps, initial=start, desc=f"mgrpo {cfg.algorithm.preset}",
        unit="step", disable=not (cfg.trainer.progress and enabled), dynamic_ncols=True,
    )


def _postfix(metrics: dict[str, Any]) -> dict[str, str]:
    shown = {"reward/mean": "reward", "label/accuracy": "label_acc", "entropy/policy": "H",
             "val/accuracy": "val"}
    return {short: f"{metrics[k]:.3f}" for k, short in shown.items()
            if isinstance(metrics.get(k), float)}


def _print_summary(run: Run, summary: dict[str, Any]) -> None:
    before, after = summary.get("before"), summary.get("after")
    lines = []
    if before or after:
        keys = [k for k in ("accuracy", "maj@k", "entropy") if k in (after or before or {})]
        lines.append("| metric | before | after |")
        lines.append("|---|---|---|")
        for key in keys:
            b = f"{before[key]:.3f}" if before and key in before else "-"
            a = f"{after[key]:.3f}" if after and key in after else "-"
            lines.append(f"| val {key} | {b} | {a} |")
    ckpt = latest_checkpoint(run.run_dir / "checkpoints")
    lines.append(f"run directory: {run.run_dir}")
    lines.append(f"checkpoint:    {ckpt}")
    if "tensorboard" in run.cfg.trainer.report_to:
        lines.append(f"tensorboard:   tensorboard --logdir {run.run_dir / 'tensorboard'}")
    print("\n".join(lines), file=sys.stderr)
