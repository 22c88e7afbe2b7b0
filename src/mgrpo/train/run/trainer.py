"""The training loop: validation cadence, logging, checkpoints, resume, signals.

`train(cfg, output_dir)` sets the run up (`setup.build_run`: the three models of M-GRPO,
policy, momentum = EMA master + generator, frozen reference only when kl_coef > 0), then
calls `step.train_step` once per step. Everything that decides a step's outcome is a pure
function of (seed, step) plus the restored model/optimizer/scheduler state, so `--resume`
continues bit-exactly on CPU. What the run directory holds: `mgrpo.train.run.run_dir.LAYOUT`.
"""

from __future__ import annotations

import signal
import sys
import threading
from pathlib import Path
from types import FrameType
from typing import Any

from mgrpo.config import Config, config_to_dict
from mgrpo.parallel import distributed as D
from mgrpo.progress import Progress, progress
from mgrpo.train.logs.metrics_writer import MetricsWriter
from mgrpo.train.logs.samples import SamplesWriter
from mgrpo.train.logs.trackers import Trackers  # W&B / MLflow (trainer.report_to), rank 0 only
from mgrpo.train.run.errors import TrainingError
from mgrpo.train.run.resume import (
    newest_checkpoint,
    print_summary,
    restore_run,
    save_run,
    warn_precision_change,
)
from mgrpo.train.run.run_dir import CHECKPOINTS_DIR
from mgrpo.train.run.setup import Run, build_run
from mgrpo.train.run.validation import run_validation
from mgrpo.train.step import NonFiniteLossError, StepBatch, train_step

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

    def _handle(self, signum: int, frame: FrameType | None) -> None:
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


# ------------------------------------------------------------------------------ the loop


def train(cfg: Config, run_dir: str | Path, *, resume: bool = False) -> Path:
    """Run (or resume) training; return the run directory.

    SIGTERM/SIGINT (main thread): the current step finishes and is checkpointed, then
    TrainingInterrupted (a KeyboardInterrupt) is raised; a second signal abandons the step.
    A signal during the last step lets the run finish normally."""
    with _StopSignals() as signals:
        run_dir = Path(run_dir)
        run = build_run(cfg, run_dir, resume)
        # an error on this rank alone tears its process group down, so the other ranks stop
        # now instead of waiting in their next collective until distributed.timeout_s
        with D.stop_peers_on_error(run.models.dist):
            return _train(run, cfg, run_dir, resume=resume, signals=signals)


def _train(run: Run, cfg: Config, run_dir: Path, *, resume: bool, signals: _StopSignals) -> Path:
    ctx = run.models.dist  # rank 0 writes metrics, TensorBoard and checkpoints
    log = MetricsWriter(run_dir, tensorboard=ctx.is_main and "tensorboard" in cfg.trainer.report_to)
    start, bad_steps = 0, 0
    summary: dict[str, Any] = {}
    last: Path | None = None  # the newest verified checkpoint: restored, or written here
    if resume:
        # verified once over the ranks: each hashes its share of the files
        ckpt = last = newest_checkpoint(ctx, run_dir / CHECKPOINTS_DIR)
        if ckpt is None:
            D.rank_print(ctx, f"mgrpo: no complete checkpoint in {run_dir}; starting from step 0")
        else:
            state = restore_run(run, ckpt)
            warn_precision_change(run, state.get("precision"), ckpt)
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
            twin_ids = (run.train_set.twin_batch(step, cfg.trainer.prompts_per_step)
                        [mine.start:mine.stop] if run.spec.paraphrases else None)  # co-rewarding-i
            batch = StepBatch(prompt_ids=prompt_ids[mine.start:mine.stop],
                              answers=[r.answer for r in records[mine.start:mine.stop]],
                              prompt_offset=mine.start, global_prompts=len(records),
                              twin_ids=twin_ids)
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
            progress.set_postfix(_postfix(metrics), refresh=False)
            progress.update(1)
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
                last = save_run(run, step, {"bad_steps": bad_steps, "summary": summary})
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
        print_summary(run, summary, last)
    for engine in (run.models.policy_engine, run.models.momentum_engine):
        if engine is not None:  # vllm: shut its engine down before the process group goes
            engine.close()
    D.shutdown(ctx)
    return run_dir


def _progress(cfg: Config, start: int, enabled: bool = True) -> Progress:
    """A bar on a terminal, a plain line every tenth of the run otherwise (`mgrpo.progress`)."""
    return progress(cfg.trainer.max_steps, initial=start, desc=f"mgrpo {cfg.algorithm.preset}",
                    unit="step", enabled=cfg.trainer.progress and enabled)


def _postfix(metrics: dict[str, Any]) -> dict[str, str]:
    shown = {"reward/mean": "reward", "label/accuracy": "label_acc", "entropy/policy": "H",
             "val/accuracy": "val"}
    return {short: f"{metrics[k]:.3f}" for k, short in shown.items()
            if isinstance(metrics.get(k), float)}
