"""The training loop: validation cadence, logging, checkpoints, resume, signals.

`train(cfg, output_dir)` sets the run up (`setup.build_run`: the three models of M-GRPO,
policy, momentum = EMA master + generator, frozen reference only when kl_coef > 0), then
calls `step.train_step` once per step. Everything that decides a step's outcome is a pure function of (seed, step) plus the
restored model/optimizer/scheduler state, so `--resume` continues bit-exactly on CPU.

Run directory:
    config.yaml          the fully resolved config
    metrics.jsonl        one JSON object per step (flushed + fsynced each step)
    checkpoints/step-N/  see `checkpoint.py`
    tensorboard/         the same scalars for TensorBoard (trainer.report_to)
    trackers.json        W&B / MLflow run ids, so --resume continues those runs (`trackers.py`)
"""

from __future__ import annotations

import random
import signal
import sys
import threading
import warnings
from pathlib import Path
from typing import Any

import torch

from mgrpo.config import Config, config_to_dict
from mgrpo.parallel import distributed as D
from mgrpo.train.checkpoint import (
    latest_checkpoint,
    load_tensors,
    new_tmp_dir,
    optimizer_from_files,
    read_json,
    save_checkpoint,
)
from mgrpo.train.metrics_writer import MetricsWriter
from mgrpo.train.samples import SamplesWriter
from mgrpo.train.setup import Run, TrainingError, build_run
from mgrpo.train.step import NonFiniteLossError, StepBatch, train_step
from mgrpo.train.trackers import Trackers  # W&B / MLflow (trainer.report_to), rank 0 only
from mgrpo.train.validation import run_validation

__all__ = ["Run", "TrainingError", "TrainingInterrupted", "build_run", "train"]


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


def _restore(run: Run, ckpt: Path) -> dict[str, Any]:
    """Load policy/momentum/optimizer/scheduler/RNG from a verified checkpoint."""
    models = run.models
    if models.dist.fsdp:  # sharded policy / optimizer / momentum, resharded to this world size
        D.load_sharded(models.dist, ckpt, models.policy, models.optimizer, models.momentum)
        models.after_update()  # refresh the generator copy
    else:
        _restore_replicated(run, ckpt)
    state = read_json(ckpt / "trainer_state.json")
    sched = dict(state["scheduler"])
    sched["lr_lambdas"] = [None] * len(models.optimizer.param_groups)
    models.scheduler.load_state_dict(sched)
    torch.set_rng_state(load_tensors(ckpt / "rng.safetensors")["torch"])
    random.setstate(tuple(_tuplify(state["python_rng"])))
    return state


def _restore_replicated(run: Run, ckpt: Path) -> None:
    models = run.models
    try:
        run.layout.load_weights(models.policy, ckpt)
    except ValueError as exc:  # the checkpoint does not fit this model
        raise TrainingError(str(exc)) from None
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
    extra_tensors = {"rng.safetensors": {"torch": torch.get_rng_state()},
                     **run.layout.checkpoint_tensors(models.policy)}
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
            model=run.layout.export_model(models.policy),
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
    log = MetricsWriter(run_dir, tensorboard=ctx.is_main and "tensorboard" in cfg.trainer.report_to)
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
    samples = SamplesWriter(run_dir, cfg.trainer.log_samples_every)
    if ctx.is_main:
        log.truncate_after(start if start else -1)  # a run restarted at 0 redoes its step-0 row
        samples.truncate_after(start)
    D.barrier(ctx, "resume")
    for past in log.read():  # rebuild the alarm's state from the steps already run
        run.alarm.update(past)
    if start >= cfg.trainer.max_steps:
        print(f"mgrpo: {run_dir} is already at step {start} >= trainer.max_steps", file=sys.stderr)
    trackers = Trackers(cfg.trainer.report_to, config_to_dict(cfg), run_dir, enabled=ctx.is_main,
                        run_name=cfg.trainer.run_name, project=cfg.trainer.project)
    progress = _progress(cfg, start, enabled=ctx.is_main)
    try:
        if start == 0 and run.val_records:
            summary["before"] = run_validation(run, step=0)
            # step-0 row: the untrained policy's validation, so curves and "best" start at 0
            row = {"step": 0, **{f"val/{k}": v for k, v in summary["before"].items()}}
            run.alarm.update(row)
            if ctx.is_main:
                log.write(row)
                trackers.log(row)
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
                logged = [] if samples.due(step) else None  # the step fills it (all ranks)
                metrics = train_step(run.models, batch, cfg, run.spec, step, samples=logged)
                if logged and ctx.is_main:
                    samples.write(logged)
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
