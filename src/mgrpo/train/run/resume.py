"""Saving and restoring a built `Run`: what a checkpoint holds per model layout, writing it,
reading it back, and the checks after a restore.

What `checkpoints/step-N/` holds, file by file and per layout, is the run directory's one
description, `mgrpo.train.run.run_dir.LAYOUT` (docs/design.md §6); the directory format
(atomic write, manifest of checksums, rotation) is `mgrpo.train.run.checkpoint`; FSDP shards
are `mgrpo.parallel.sharded_checkpoint`. What is restored: the trained weights (the fp32
master when the checkpoint has one, else the HF weights; LoRA: the adapters over the base
named by `model.name`), the momentum master, the optimizer, the scheduler and both RNGs, so
a resume on CPU continues bit-exactly. A resolved device / dtype that differs from the
checkpoint's is reported (`warn_precision_change`). Setting up the run directory and the
config checks of a resume (before any model exists) are `mgrpo.train.run.run_dir`.
"""

from __future__ import annotations

import random
import sys
import warnings
from pathlib import Path
from typing import Any

import torch
from torch import nn

from mgrpo.parallel import distributed as D
from mgrpo.parallel.sharded_checkpoint import load_sharded, save_sharded
from mgrpo.train.layout.layouts import LoraLayout, MixedLayout
from mgrpo.train.layout.lora import LoraExport, load_trainable_state, trainable_state
from mgrpo.train.run.checkpoint import (
    latest_checkpoint,
    load_tensors,
    new_tmp_dir,
    optimizer_from_files,
    read_json,
    save_checkpoint,
)
from mgrpo.train.run.errors import TrainingError
from mgrpo.train.run.run_dir import (
    CHECKPOINTS_DIR,
    LORA_FILE,
    MASTER_FILE,
    MOMENTUM_FILE,
    OPTIMIZER_FILE,
    OPTIMIZER_META_FILE,
    RNG_FILE,
    SHARDED_DIR,
    STATE_FILE,
    TENSORBOARD_DIR,
    step_dir_name,
)
from mgrpo.train.run.setup import Run
from mgrpo.train.types import StepModels

# ----------------------------------------------------------------- what a checkpoint holds


def _hf_model(run: Run) -> nn.Module | LoraExport:
    """What the checkpoint's HF directory is written from (`save_pretrained`): the LoRA
    export (merged weights or adapters), the compute-dtype policy copy, or the policy."""
    if isinstance(run.layout, LoraLayout):
        return run.layout.lora_export
    return run.layout.roles.policy_full or run.models.policy


def _layout_tensors(run: Run) -> dict[str, dict[str, torch.Tensor]]:
    """The layout's own tensor files (file name -> name -> tensor)."""
    policy = run.models.policy
    if isinstance(run.layout, LoraLayout):
        return {LORA_FILE: trainable_state(policy)}
    if isinstance(run.layout, MixedLayout):
        return {MASTER_FILE: {n: p.detach().cpu().contiguous() for n, p in policy.named_parameters()}}
    return {}


# ------------------------------------------------------------------------------------ save


def save_run(run: Run, step: int, extra: dict[str, Any]) -> Path:
    """Collective: checkpoint step `step` of `run` (every rank calls it; rank 0 writes the
    directory, every rank its FSDP shards); `extra` joins the trainer state. Returns the path."""
    models, ctx = run.models, run.models.dist
    root = run.run_dir / CHECKPOINTS_DIR
    sched = {k: v for k, v in models.scheduler.state_dict().items() if k != "lr_lambdas"}
    state = {"step": step, "scheduler": sched, "python_rng": random.getstate(), **extra}
    extra_tensors = {RNG_FILE: {"torch": torch.get_rng_state()}, **_layout_tensors(run)}
    if run.precision is not None:
        state["precision"] = run.precision.describe()
    tmp = None
    if ctx.fsdp:  # every rank writes its shards into rank 0's temp dir, then rank 0 finishes
        tmp = D.broadcast_object(ctx, new_tmp_dir(root, step) if ctx.is_main else None)
        save_sharded(ctx, tmp / SHARDED_DIR, models.policy, models.optimizer, models.momentum)
        D.barrier(ctx, "sharded checkpoint save")
    path = root / step_dir_name(step)
    if ctx.is_main:
        path = save_checkpoint(
            root,
            step,
            model=_hf_model(run),
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


# --------------------------------------------------------------------------------- restore


def restore_run(run: Run, ckpt: Path) -> dict[str, Any]:
    """Load policy/momentum/optimizer/scheduler/RNG from a verified checkpoint; return its
    trainer state."""
    models = run.models
    if models.dist.fsdp:  # sharded policy / optimizer / momentum, resharded to this world size
        if not (ckpt / SHARDED_DIR).is_dir():
            raise TrainingError(f"{ckpt}: no {SHARDED_DIR}/ directory; it was written without "
                                "FSDP (resume it with distributed.fsdp=false)")
        load_sharded(models.dist, ckpt / SHARDED_DIR, models.policy, models.optimizer,
                     models.momentum)
        models.after_update()  # refresh the generator copy
    else:
        _restore_replicated(run, ckpt)
    state = read_json(ckpt / STATE_FILE)
    sched = dict(state["scheduler"])
    sched["lr_lambdas"] = [None] * len(models.optimizer.param_groups)
    models.scheduler.load_state_dict(sched)
    torch.set_rng_state(load_tensors(ckpt / RNG_FILE)["torch"])
    random.setstate(tuple(_tuplify(state["python_rng"])))
    _push_restored_weights(models)
    return state


def _push_restored_weights(models: StepModels) -> None:
    """The restored weights changed the models: bump their versions and push them into the
    engines that hold a copy (vllm; nothing for hf and fast, which read the live weights)."""
    for engine in (models.policy_engine, models.momentum_engine):
        if engine is not None:
            engine.version.bump()
            engine.sync_weights()


def _restore_replicated(run: Run, ckpt: Path) -> None:
    models = run.models
    if (ckpt / SHARDED_DIR).is_dir() or not (ckpt / OPTIMIZER_META_FILE).is_file():
        # checked first: the momentum and optimizer files are missing too
        raise TrainingError(f"{ckpt}: no {OPTIMIZER_META_FILE}; it was written with FSDP "
                            f"(resume it with distributed.fsdp=true)")
    try:
        _load_weights(run, ckpt)
    except ValueError as exc:  # the checkpoint does not fit this model
        raise TrainingError(str(exc)) from None
    if models.after_update is not None:  # mixed precision: the bf16 copy from the master
        models.after_update()
    if models.momentum is not None:
        models.momentum.load_state_dict(load_tensors(ckpt / MOMENTUM_FILE))
    meta = read_json(ckpt / OPTIMIZER_META_FILE)
    models.optimizer.load_state_dict(
        optimizer_from_files(load_tensors(ckpt / OPTIMIZER_FILE), meta)
    )


def _load_weights(run: Run, ckpt: Path) -> None:
    """The trained weights of a replicated run from `ckpt`: LoRA the adapters (the base comes
    from `model.name`), otherwise `load_policy_weights`."""
    if isinstance(run.layout, LoraLayout):
        load_trainable_state(run.models.policy, load_tensors(ckpt / LORA_FILE), ckpt)
    else:
        load_policy_weights(run.models.policy, ckpt)


@torch.no_grad()
def load_policy_weights(policy: nn.Module, ckpt: Path) -> None:
    """Restore full weights from checkpoint directory `ckpt`: the fp32 master when the
    checkpoint has one (written by mixed precision), else its HF weights (written by full
    weights; a resume may resolve `auto` precision differently). A tied `lm_head` may be
    absent. Raises ValueError naming the file and the first mismatched names."""
    if (ckpt / MASTER_FILE).is_file():
        master = load_tensors(ckpt / MASTER_FILE)
        names = [n for n, _ in policy.named_parameters()]
        if sorted(master) != sorted(names):
            raise ValueError(f"{ckpt / MASTER_FILE}: master weights do not match the model "
                             f"(missing {sorted(set(names) - set(master))[:3]}, "
                             f"unexpected {sorted(set(master) - set(names))[:3]})")
        for name, p in policy.named_parameters():
            p.copy_(master[name].to(p.dtype))
        return
    weights = {}
    for shard in sorted(ckpt.glob("model*.safetensors")):
        weights.update(load_tensors(shard))
    missing, unexpected = policy.load_state_dict(weights, strict=False)
    tie = getattr(policy.config, "tie_word_embeddings", False)
    tied = {k for k in missing if "lm_head" in k and tie}
    if set(missing) - tied or unexpected:
        raise ValueError(f"{ckpt}: policy weights do not match the model "
                         f"(missing {sorted(set(missing) - tied)[:3]}, "
                         f"unexpected {unexpected[:3]})")


def _tuplify(x: Any) -> Any:
    return tuple(_tuplify(v) for v in x) if isinstance(x, list) else x


# -------------------------------------------------------------------------------- checks


def newest_checkpoint(ctx: D.DistContext, root: Path) -> Path | None:
    """The newest checkpoint under `root` that verifies, the same on every rank. Several
    ranks share the hashing (`checkpoint.latest_checkpoint` with each rank's share and an
    all-gather), so the checkpoint is read once in total; one process hashes it all."""
    if not ctx.active or ctx.world_size == 1:
        return latest_checkpoint(root)
    return latest_checkpoint(root, share=(ctx.rank, ctx.world_size),
                             agree=lambda value: D.gather_objects(
                                 ctx, value, stage="checkpoint verification"))


def warn_precision_change(run: Run, saved: dict[str, str] | None, ckpt: Path) -> None:
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


# --------------------------------------------------------------------------------- summary


def print_summary(run: Run, summary: dict[str, Any], ckpt: Path | None) -> None:
    """The end-of-run table (validation before / after, from the trainer state's `summary`),
    the run directory and its newest checkpoint `ckpt` (the one this process wrote or
    restored: nothing is hashed again; None = look for the newest that verifies), on stderr."""
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
    if ckpt is None:
        ckpt = latest_checkpoint(run.run_dir / CHECKPOINTS_DIR)
    lines.append(f"run directory: {run.run_dir}")
    lines.append(f"checkpoint:    {ckpt}")
    if "tensorboard" in run.cfg.trainer.report_to:
        lines.append(f"tensorboard:   tensorboard --logdir {run.run_dir / TENSORBOARD_DIR}")
    print("\n".join(lines), file=sys.stderr)
