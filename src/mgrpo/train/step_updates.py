"""The training half of a step: the loss set, its frozen log-probs, and one update's gradient.

`train_step` (in `step.py`) calls, in order:

    loss_set(...)              rollouts that enter the loss (L rows) and their advantages
    frozen_logprobs(...)       logp_old (only when mu x U > 1 optimizer steps) and logp_ref
                               (kl_coef > 0), teacher-forced with no grad BEFORE any update
    then, for each of the mu passes and each of its U updates (the loops are in `train_step`):
    accumulate_gradients(...)  forward/backward over the update's micro-batches; loss sums
                               (with top-entropy masking, a no-grad entropy pass over the
                               update's micro-batches first: `top_entropy_masks`)
    clip_gradients(...)        all-reduce (replicated DP), clip, finiteness check; the norm

All tensors follow the step's device rule (`step.py` docstring): rows, buffers and
advantages live on the rollouts' device D. Under FSDP every rank runs as many micro-batches
as the busiest rank (`lockstep`), the shortfall filled with zero-weight dummy forwards.

Forward paths. The training log-probs come from `policy` in train mode under
`StepModels.train_autocast`. `logp_old` comes from that same forward (same module, mode and
autocast, no grad), so on unchanged weights `ratio = exp(logp - logp_old)` is exactly 1;
dropout > 0 (LoRA dropout) is the one exception, as in any PPO. `logp_ref` comes from the
reference in eval mode under the same autocast (mixed precision: bf16 weights, the rest of
the forward as in training), so it departs from the policy's training forward only by the
reference's own weights (their bf16 rounding included).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from contextlib import contextmanager

import torch

from mgrpo.core.correction import rollout_correction_weights
from mgrpo.core.entropy import top_entropy_mask, top_entropy_threshold
from mgrpo.core.losses import policy_loss
from mgrpo.parallel.distributed import DistContext, all_reduce, all_reduce_grads_, gather_objects
from mgrpo.parallel.fsdp import SCORE_METHOD
from mgrpo.rollout import RolloutBatch, score_responses
from mgrpo.train.types import LossSet, StepBatch, StepModels, UpdateSettings


class NonFiniteLossError(RuntimeError):
    """The loss or gradient norm was NaN/inf; the update was skipped."""


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


def score(model: torch.nn.Module, *args: object, **kwargs: object) -> tuple[torch.Tensor, torch.Tensor]:
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


def _autocast(models: StepModels, device: torch.device) -> contextlib.AbstractContextManager:
    """The training forward's autocast (`StepModels.train_autocast`), or nothing."""
    if models.train_autocast is None:
        return contextlib.nullcontext()
    return torch.autocast(device.type, dtype=models.train_autocast)


@torch.no_grad()
def frozen_logprobs(models: StepModels, batch: StepBatch, settings: UpdateSettings,
                    ls: LossSet) -> tuple[torch.Tensor | None, torch.Tensor | None]:
    """(logp_old, logp_ref), each (L, T') fp32 on D or None, before any update.

    logp_old only when a step takes more than one optimizer step (mu x U > 1; the first update
    uses its own detached log-prob: same weights), from the policy's training forward (module
    docstring); every later update, of every pass, reads these; logp_ref only when there is a
    reference and kl_coef > 0."""
    need_old = settings.optimizer_steps > 1
    use_ref = models.reference is not None and settings.loss.kl_coef > 0
    dev = ls.advantages.device
    shape = ls.rollouts.response_ids.shape  # (L, T')
    logp_old = torch.zeros(shape, device=dev) if need_old else None
    logp_ref = torch.zeros(shape, device=dev) if use_ref else None
    ref_scope = models.reference_scope or contextlib.nullcontext
    sharded = ((need_old and hasattr(models.policy, SCORE_METHOD))
               or (use_ref and hasattr(models.reference, SCORE_METHOD)))
    # the updates' own micro-batches, so each row is scored in the company (padding width,
    # shared prompts) it trains in: the same forward gives the same numbers
    parts = ([rows for u in range(settings.updates_per_step)
              for rows in update_micro_batches(ls, batch, settings, u)]
             if (need_old or use_ref) else [])
    for rows in lockstep(models.dist, parts, sharded):
        mb = _micro_batch(ls, rows)  # rows None: a forward whose result is dropped
        prompts = [batch.prompt_ids[i] for i in mb.prompt_index.tolist()]  # one host sync
        width = mb.response_ids.shape[1]
        if logp_old is not None:
            with train_mode(models.policy), _autocast(models, dev):
                old, _ = score(models.policy, prompts, mb.response_ids, mb.response_mask,
                               settings.temperature, with_grad=False)
            if rows is not None:
                logp_old[rows, :width] = old.float()
        if logp_ref is not None:
            with ref_scope(), _autocast(models, dev):
                ref, _ = score(models.reference, prompts, mb.response_ids, mb.response_mask,
                               settings.temperature, with_grad=False)
            if rows is not None:
                logp_ref[rows, :width] = ref.float()
    return logp_old, logp_ref


def _update_rows(ls: LossSet, update: int, updates: int, global_of: torch.Tensor,
                 B_global: int) -> torch.Tensor:
    """(L_u,) loss rows of update u: those of the GLOBAL prompts [u B / U, (u + 1) B / U);
    `global_of` (B_local,) is the global index of each local prompt (`StepBatch.global_index`:
    offset + b, twins after all the questions)."""
    lo, hi = update * B_global // updates, (update + 1) * B_global // updates
    global_index = global_of[ls.rollouts.prompt_index]  # local prompt b -> its global index
    return ((global_index >= lo) & (global_index < hi)).nonzero().flatten()


def update_micro_batches(ls: LossSet, batch: StepBatch, settings: UpdateSettings,
                         update: int) -> list[torch.Tensor]:
    """Loss-set rows of each micro-batch of update `update` (at most micro_batch_size each)."""
    global_of = torch.tensor([batch.global_index(b) for b in range(len(batch.prompt_ids))],
                             device=ls.rollouts.prompt_index.device)
    positions = _update_rows(ls, update, settings.updates_per_step, global_of,
                             batch.global_prompts or len(batch.prompt_ids))
    return [positions[c] for c in chunks(len(positions), settings.micro_batch_size,
                                         ls.advantages.device)]


@torch.no_grad()
def top_entropy_masks(models: StepModels, batch: StepBatch, settings: UpdateSettings,
                      ls: LossSet, parts: list[torch.Tensor]
                      ) -> tuple[list[torch.Tensor], float | None]:
    """Top-entropy masking of one update (`core.entropy.top_entropy_mask`): one (mb, T') bool
    mask per micro-batch of `parts`, and the threshold tau (None: no loss token anywhere).

    The entropies are the current policy's (the update's weights: no optimizer step happens
    within an update), from its training forward without grad over the update's own
    micro-batches, so each token's entropy is the one its gradient forward computes. tau is the
    (1 - rho) quantile of the loss tokens of the whole update, pooled over its micro-batches
    and over the ranks, so the mask does not depend on micro_batch_size or on the number of
    processes (TRL pools one micro-batch over the ranks; the two agree when an update is one
    micro-batch). Call with the policy in train mode."""
    dev = ls.advantages.device
    sharded = hasattr(models.policy, SCORE_METHOD)
    entropies, values = [], []
    for rows in lockstep(models.dist, parts, sharded):
        mb = _micro_batch(ls, rows)
        prompts = [batch.prompt_ids[i] for i in mb.prompt_index.tolist()]
        with _autocast(models, dev):
            _, entropy = score(models.policy, prompts, mb.response_ids, mb.response_mask,
                               settings.temperature, with_grad=False)
        if rows is None:  # FSDP lockstep filler
            continue
        entropy = entropy.float()  # (mb, T')
        entropies.append((entropy, mb.response_mask))
        values.append(entropy[mb.response_mask].cpu())
    local = torch.cat(values) if values else torch.zeros(0)
    pooled = torch.cat(gather_objects(models.dist, local, stage="top-entropy threshold"))
    tau = top_entropy_threshold(pooled, settings.loss.top_entropy_quantile)
    share = settings.loss.top_entropy_quantile
    masks = [top_entropy_mask(entropy, mask, share, threshold=tau) if tau is not None
             else torch.zeros_like(mask) for entropy, mask in entropies]
    return masks, tau


def accumulate_gradients(models: StepModels, batch: StepBatch, settings: UpdateSettings,
                         ls: LossSet, update: int, logp_old: torch.Tensor | None,
                         logp_ref: torch.Tensor | None, step: int, epoch: int = 0
                         ) -> dict[str, float]:
    """Forward/backward of update `update` of pass `epoch` over its micro-batches; its loss
    sums / (mu x U).

    Each micro-batch's loss is its partial sum over the update's GLOBAL normaliser (tokens
    and sequences summed over ranks), so the accumulated gradient is the update's gradient.
    The first update of the first pass reads its own detached log-probs as logp_old (the
    same weights); every other update reads `logp_old`. Call with the policy in train mode.
    Raises NonFiniteLossError (grads zeroed) on a NaN/inf loss (one process; under W > 1 the
    gradient norm catches it on every rank)."""
    ctx, updates = models.dist, settings.optimizer_steps
    dev = ls.advantages.device
    sharded = hasattr(models.policy, SCORE_METHOD)
    parts = update_micro_batches(ls, batch, settings, update)
    local_counts = [float(sum(float(ls.rollouts.response_mask[rows].sum()) for rows in parts)),
                    float(sum(len(rows) for rows in parts))]  # (tokens, sequences) of the update
    n_tokens, n_seqs = all_reduce(ctx, local_counts, stage="loss normalisers")
    sums = {"loss/pg": 0.0, "loss/kl": 0.0, "loss/clip_fraction": 0.0}
    if settings.loss.entropy_coef > 0:  # the same keys on every rank (they are all-reduced)
        sums["loss/entropy"] = 0.0
    correct = settings.loss.rollout_correction != "off"
    if correct:
        sums["rollout/is_weight_mean"] = sums["rollout/is_truncated_fraction"] = 0.0
    masks: list[torch.Tensor] | None = None
    if settings.loss.top_entropy_quantile < 1.0:
        masks, tau = top_entropy_masks(models, batch, settings, ls, parts)
        # tau is the same on every rank and the sums are summed over ranks
        sums["loss/top_entropy_threshold"] = (0.0 if tau is None else tau) / updates / ctx.world_size
        sums["loss/top_entropy_kept_fraction"] = 0.0
    first = update == 0 and epoch == 0
    for index, rows in enumerate(lockstep(ctx, parts, sharded)):
        mb = _micro_batch(ls, rows)
        width = mb.response_ids.shape[1]
        prompts = [batch.prompt_ids[i] for i in mb.prompt_index.tolist()]
        bonus = settings.loss.entropy_coef > 0
        with _autocast(models, dev):
            logp, entropy = score(models.policy, prompts, mb.response_ids, mb.response_mask,
                                  settings.temperature, with_grad=True,
                                  **({"entropy_grad": True} if bonus else {}))
        logp = logp.float()  # (mb, T') the loss is computed in fp32
        if rows is None:  # FSDP lockstep filler: zero-weight loss on one row
            (logp.sum() * 0.0).backward()
            continue
        old = logp.detach() if first else logp_old[rows, :width]
        weights = None
        if correct:  # truncated IS against the sampler's own log-probs (core.correction)
            sampler = mb.sampler_logprobs if mb.sampler_logprobs is not None else mb.logprobs
            weights = rollout_correction_weights(old, sampler.float(), mb.response_mask,
                                                 settings.loss.rollout_correction,
                                                 settings.loss.rollout_correction_cap)
            on = mb.response_mask
            share = 1.0 / max(n_tokens, 1.0) / updates
            sums["rollout/is_weight_mean"] += float(weights[on].sum()) * share
            sums["rollout/is_truncated_fraction"] += float(
                (weights[on] >= settings.loss.rollout_correction_cap).sum()) * share
        loss, stats = policy_loss(
            logp,
            old,
            None if logp_ref is None else logp_ref[rows, :width],
            ls.advantages[rows],
            mb.response_mask,
            clip=settings.loss.clip, kl_coef=settings.loss.kl_coef, agg=settings.loss.agg,
            kl_estimator=settings.loss.kl_estimator,
            clip_low=settings.loss.clip_low, clip_high=settings.loss.clip_high,
            entropy=entropy.float() if bonus else None, entropy_coef=settings.loss.entropy_coef,
            num_tokens_global=n_tokens, num_seqs_global=n_seqs,
            norm_length=settings.max_new_tokens,
            is_weights=weights,
            ratio_level=settings.loss.ratio_level, loss_mode=settings.loss.policy_loss,
            token_mask=None if masks is None else masks[index],
        )
        if not torch.isfinite(loss) and ctx.world_size == 1:  # W > 1: the global
            models.optimizer.zero_grad(set_to_none=True)
            raise NonFiniteLossError(f"step {step}: loss is {loss.item()}")
        # (grad norm below, the same on every rank, catches a NaN on any rank)
        (loss * ctx.grad_scale if ctx.grad_scale != 1.0 else loss).backward()
        sums["loss/pg"] += stats["pg_loss"] / updates
        sums["loss/kl"] += stats["kl"] / updates
        if bonus:
            sums["loss/entropy"] += stats["entropy"] / updates
        sums["loss/clip_fraction"] += (
            stats["clip_fraction"] * stats["num_tokens"] / max(n_tokens, 1.0) / updates
        )
        if masks is not None:
            sums["loss/top_entropy_kept_fraction"] += (
                stats["token_mask_tokens"] / max(n_tokens, 1.0) / updates)
    return sums


def clip_gradients(models: StepModels, max_norm: float, step: int) -> float:
    """All-reduce (replicated DP), clip to `max_norm`, check finiteness; the norm.

    Raises NonFiniteLossError (grads zeroed, no optimizer step) on a NaN/inf norm."""
    trainable = [p for p in models.policy.parameters() if p.requires_grad]
    all_reduce_grads_(models.dist, trainable)  # replicated DP only; FSDP reduced in backward
    grad_norm = torch.nn.utils.clip_grad_norm_(trainable, max_norm)
    grad_norm = grad_norm.full_tensor() if hasattr(grad_norm, "full_tensor") else grad_norm
    if not torch.isfinite(grad_norm):
        models.optimizer.zero_grad(set_to_none=True)
        raise NonFiniteLossError(f"step {step}: gradient norm is {grad_norm.item()}")
    return float(grad_norm)
