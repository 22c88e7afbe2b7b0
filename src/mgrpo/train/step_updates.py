"""The training half of a step: the loss set, its `logp_old` / `logp_ref`, and the updates.

`train_step` (in `step.py`) calls, in order:

    loss_set(...)          rollouts that enter the loss (L rows) and their advantages
    frozen_logprobs(...)   logp_old (only when updates_per_step > 1) and logp_ref (kl_coef > 0),
                           teacher-forced with no grad BEFORE any update, by micro-batch
    run_updates(...)       U optimizer updates, each over a slice of the global prompts, with
                           gradient accumulation over micro-batches; EMA after each update

All tensors follow the step's device rule (`step.py` docstring): rows, buffers and
advantages live on the rollouts' device D. Under FSDP every rank runs as many micro-batches
as the busiest rank (`lockstep`), the shortfall filled with zero-weight dummy forwards.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import torch

from mgrpo.config import Config
from mgrpo.core.losses import policy_loss
from mgrpo.parallel.distributed import DistContext, all_reduce, all_reduce_grads_
from mgrpo.parallel.fsdp import SCORE_METHOD
from mgrpo.rollout import RolloutBatch, score_responses


class NonFiniteLossError(RuntimeError):
    """The loss or gradient norm was NaN/inf; the update was skipped."""


@dataclass
class LossSet:
    """The L rollouts that enter the loss, as rows of `train` (the B*M policy train rollouts)."""

    train: RolloutBatch  # (B*M, T) the policy's first M rollouts of each prompt
    rollouts: RolloutBatch  # (L, T') the loss rows of `train`
    advantages: torch.Tensor  # (L,) on D


def chunks(n: int, size: int, device: torch.device | None = None) -> Iterator[torch.Tensor]:
    """Index tensors [0, size), [size, 2 size), ... covering range(n), on `device`."""
    for start in range(0, n, size):
        yield torch.arange(start, min(start + size, n), device=device)


def policy_train_rows(B: int, M: int, V: int, device: torch.device | None = None) -> torch.Tensor:
    """Row indices (prompt-major) of the first M of each prompt's M + V policy rollouts."""
    rows = torch.arange(B, device=device).unsqueeze(1) * (M + V)
    return (rows + torch.arange(M, device=device).unsqueeze(0)).flatten()


def loss_set(train: RolloutBatch, in_loss: torch.Tensor, advantages: torch.Tensor) -> LossSet:
    """The train rollouts (B*M, T) with `in_loss` / `advantages` (B, M) on D -> the loss set."""
    rows = in_loss.flatten().nonzero().flatten()  # (L,) indices into `train`
    return LossSet(train, train.select(rows), advantages.flatten()[rows])


def score(model: torch.nn.Module, *args: Any, **kwargs: Any) -> tuple[torch.Tensor, torch.Tensor]:
    """score_responses, through the FSDP-registered forward method when the model is sharded."""
    method = getattr(model, SCORE_METHOD, None)
    if method is not None:
        return method(*args, **kwargs)
    return score_responses(model, *args, **kwargs)


def lockstep(ctx: DistContext, parts: list[torch.Tensor], sharded: bool) -> list[torch.Tensor | None]:
    """FSDP forwards are collectives: every rank must run as many micro-batches as the
    busiest one; the shortfall is filled with None (a zero-weight dummy micro-batch)."""
    if not (sharded and ctx.world_size > 1):
        return list(parts)
    most = int(all_reduce(ctx, [len(parts)], "max", stage="micro-batch count")[0])
    return list(parts) + [None] * (most - len(parts))


@contextmanager
def train_mode(model: torch.nn.Module) -> Iterator[None]:
    """The model in train mode for the block (gradient checkpointing and dropout act only
    then), back in eval mode afterwards, so rollouts and no-grad passes never see them."""
    model.train()
    try:
        yield
    finally:
        model.eval()


def _micro_batch(ls: LossSet, rows: torch.Tensor | None) -> RolloutBatch:
    """The loss rows `rows`, or (None: an FSDP lockstep filler) the first train rollout."""
    if rows is None:
        return ls.train.select(torch.arange(1, device=ls.advantages.device))
    return ls.rollouts.select(rows)


@torch.no_grad()
def frozen_logprobs(models: Any, prompt_ids: list[list[int]], cfg: Config,
                    ls: LossSet) -> tuple[torch.Tensor | None, torch.Tensor | None]:
    """(logp_old, logp_ref), each (L, T') fp32 on D or None, before any update.

    logp_old only when updates_per_step > 1 (update 0 uses its own detached log-prob: same
    weights); logp_ref only when there is a reference and kl_coef > 0."""
    need_old = cfg.trainer.updates_per_step > 1
    use_ref = models.reference is not None and cfg.algorithm.kl_coef > 0
    dev = ls.advantages.device
    shape = ls.rollouts.response_ids.shape  # (L, T')
    logp_old = torch.zeros(shape, device=dev) if need_old else None
    logp_ref = torch.zeros(shape, device=dev) if use_ref else None
    ref_scope = models.reference_scope or contextlib.nullcontext
    sharded_ref = use_ref and hasattr(models.reference, SCORE_METHOD)
    parts = list(chunks(len(ls.advantages), cfg.trainer.micro_batch_size, dev)) if (need_old or use_ref) else []
    temperature = cfg.generation.temperature
    for chunk in lockstep(models.dist, parts, sharded_ref):
        mb = _micro_batch(ls, chunk)  # chunk None: a forward whose result is dropped
        prompts = [prompt_ids[i] for i in mb.prompt_index.tolist()]  # one host sync
        width = mb.response_ids.shape[1]
        if chunk is not None and logp_old is not None:
            old, _ = score(models.policy_full or models.policy, prompts, mb.response_ids,
                           mb.response_mask, temperature, with_grad=False)
            logp_old[chunk, :width] = old.float()
        if logp_ref is not None:
            with ref_scope():
                ref, _ = score(models.reference, prompts, mb.response_ids, mb.response_mask,
                               temperature, with_grad=False)
            if chunk is not None:
                logp_ref[chunk, :width] = ref.float()
    return logp_old, logp_ref


def _update_rows(ls: LossSet, update: int, updates: int, prompt_offset: int, B_global: int) -> torch.Tensor:
    """(L_u,) loss rows of update u: those of the GLOBAL prompts [u B / U, (u + 1) B / U)."""
    lo, hi = update * B_global // updates, (update + 1) * B_global // updates
    global_index = ls.rollouts.prompt_index + prompt_offset  # local prompt b -> offset + b
    return ((global_index >= lo) & (global_index < hi)).nonzero().flatten()


def run_updates(models: Any, batch: Any, cfg: Config, momentum: float, step: int, ls: LossSet,
                logp_old: torch.Tensor | None, logp_ref: torch.Tensor | None,
                timer: Any) -> tuple[dict[str, float], list[float]]:
    """The step's U optimizer updates (EMA after each); return (loss sums, grad norms).

    Each micro-batch's loss is its partial sum over the update's GLOBAL normaliser (tokens
    and sequences summed over ranks), so the accumulated gradient is the update's gradient.
    Raises NonFiniteLossError (grads zeroed, no step) on a NaN/inf loss or gradient norm."""
    ctx, algo, gen = models.dist, cfg.algorithm, cfg.generation
    updates = cfg.trainer.updates_per_step
    dev = ls.advantages.device
    sharded = hasattr(models.policy, SCORE_METHOD)
    trainable = [p for p in models.policy.parameters() if p.requires_grad]
    autocast = (contextlib.nullcontext if models.train_autocast is None
                else lambda: torch.autocast(dev.type, dtype=models.train_autocast))
    sums = {"loss/pg": 0.0, "loss/kl": 0.0, "loss/clip_fraction": 0.0}
    grad_norms: list[float] = []
    for update in range(updates):
        positions = _update_rows(ls, update, updates, batch.prompt_offset,
                                 batch.global_prompts or len(batch.prompt_ids))
        local_counts = [float(ls.rollouts.response_mask[positions].sum()), float(len(positions))]
        n_tokens, n_seqs = all_reduce(ctx, local_counts, stage="loss normalisers")
        with timer("train"), train_mode(models.policy):
            models.optimizer.zero_grad(set_to_none=True)
            for chunk in lockstep(ctx, list(chunks(len(positions), cfg.trainer.micro_batch_size, dev)), sharded):
                rows = None if chunk is None else positions[chunk]
                mb = _micro_batch(ls, rows)
                width = mb.response_ids.shape[1]
                prompts = [batch.prompt_ids[i] for i in mb.prompt_index.tolist()]
                with autocast():
                    logp, _ = score(models.policy, prompts, mb.response_ids, mb.response_mask,
                                    gen.temperature, with_grad=True)
                logp = logp.float()  # (mb, T') the loss is computed in fp32
                if chunk is None:  # FSDP lockstep filler: zero-weight loss on one row
                    (logp.sum() * 0.0).backward()
                    continue
                loss, stats = policy_loss(
                    logp,
                    logp.detach() if update == 0 else logp_old[rows, :width],
                    None if logp_ref is None else logp_ref[rows, :width],
                    ls.advantages[rows],
                    mb.response_mask,
                    clip=algo.clip, kl_coef=algo.kl_coef, agg=algo.loss_agg,
                    num_tokens_global=n_tokens, num_seqs_global=n_seqs,
                    norm_length=gen.max_new_tokens,
                )
                if not torch.isfinite(loss) and ctx.world_size == 1:  # W > 1: the global
                    models.optimizer.zero_grad(set_to_none=True)
                    raise NonFiniteLossError(f"step {step}: loss is {loss.item()}")
                # (grad norm below, the same on every rank, catches a NaN on any rank)
                (loss * ctx.grad_scale if ctx.grad_scale != 1.0 else loss).backward()
                sums["loss/pg"] += stats["pg_loss"] / updates
                sums["loss/kl"] += stats["kl"] / updates
                sums["loss/clip_fraction"] += (
                    stats["clip_fraction"] * stats["num_tokens"] / max(n_tokens, 1.0) / updates
                )
            grad_norms.append(_clip_and_step(models, ctx, trainable, cfg.optim.max_grad_norm, step))
        with timer("sync"):
            if models.after_update is not None:
                models.after_update()
        with timer("ema"):
            if models.momentum is not None:
                models.momentum.update_(models.policy, momentum)
    return sums, grad_norms


def _clip_and_step(models: Any, ctx: DistContext, trainable: list[torch.nn.Parameter],
                   max_norm: float, step: int) -> float:
    """All-reduce (replicated DP), clip to `max_norm`, check finiteness, step; the norm."""
    all_reduce_grads_(ctx, trainable)  # replicated DP only; FSDP reduced in backward
    grad_norm = torch.nn.utils.clip_grad_norm_(trainable, max_norm)
    grad_norm = grad_norm.full_tensor() if hasattr(grad_norm, "full_tensor") else grad_norm
    if not torch.isfinite(grad_norm):
        models.optimizer.zero_grad(set_to_none=True)
        raise NonFiniteLossError(f"step {step}: gradient norm is {grad_norm.item()}")
    models.optimizer.step()
    models.optimizer.zero_grad(set_to_none=True)
    return float(grad_norm)
