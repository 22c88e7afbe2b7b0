"""One M-GRPO training step, top to bottom (docs/design.md §2).

    policy rollouts (M [+ vote-only]) and momentum rollouts (N) for B prompts
    -> trajectory entropies (B, G) -> IQR keep mask -> answers -> majority vote (pseudo-labels)
    -> rewards (B, M) -> loss set -> group advantages -> clipped PG loss (+ k3 KL)
    -> optimizer step(s) -> EMA of the momentum model after each optimizer step.

Every preset (m-grpo, srt, ttrl, intuitor, grpo) runs this same function; what differs is the
`AlgorithmSpec` (see `algorithms.py`). Stage names double as timer and metric prefixes:
`generate`, `score`, `advantage`, `train`, `ema`.

Departures from the paper: none in the math. Engineering choices: on the first optimizer
update of a step the policy still has the weights that generated the rollouts, so `logp_old`
is the detached training log-prob itself (ratio == 1 exactly, no extra forward pass); only
when `updates_per_step > 1` is it recomputed by a teacher-forced no-grad pass before any
update, for the later updates. Rollouts outside the loss set are not forwarded at all during
training (their loss mask is 0). With `fast` engines the policy and momentum rollouts are
decoded in one loop (`FastEngine.generate_joint`); every teacher-forced pass runs each distinct
prompt once and shares its KV cache across that prompt's rollouts (`score_responses`).

Distributed (see `distributed.py`): the batch holds this rank's slice of the step's prompts
(`StepBatch.prompt_offset` / `global_prompts`); loss normalisers are summed over ranks so the
summed gradient equals the 1-rank gradient, and the metrics are computed by the 1-rank
formulas on the gathered per-rollout statistics.
"""

from __future__ import annotations

import contextlib
import math
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import torch

from mgrpo.algorithms import AlgorithmSpec
from mgrpo.answers import extract_answer
from mgrpo.config import Config
from mgrpo.core.advantages import get_advantage_estimator
from mgrpo.core.entropy import trajectory_entropy
from mgrpo.core.filtering import iqr_keep_mask
from mgrpo.core.losses import policy_loss
from mgrpo.core.voting import Vote, majority_vote
from mgrpo.distributed import (
    SCORE_METHOD,
    SINGLE,
    DistContext,
    all_reduce,
    all_reduce_grads_,
    gather_objects,
)
from mgrpo.momentum import MomentumModel
from mgrpo.rewards import self_certainty
from mgrpo.rollout import RolloutBatch, SamplingParams, score_responses
from mgrpo.rollout.fast_engine import FastEngine


@dataclass
class StepModels:
    """Everything a step touches. `reference` is None when kl_coef == 0 (no third model)."""

    policy: torch.nn.Module
    policy_engine: Any
    momentum: MomentumModel | None
    momentum_engine: Any | None
    reference: torch.nn.Module | None
    optimizer: torch.optim.Optimizer
    scheduler: Any
    checker: Any  # mgrpo.answers.AnswerChecker
    tokenizer: Any
    stop_token_ids: tuple[int, ...]
    dist: DistContext = SINGLE
    # full-weight (unsharded) policy for no-grad passes (FSDP: the generator copy); None = policy
    policy_full: torch.nn.Module | None = None
    # context in which `reference` scores (LoRA: adapters disabled); None = nothing to enter
    reference_scope: Callable[[], contextlib.AbstractContextManager] | None = None
    # after each optimizer step (FSDP: refresh the unsharded generator copy); None = nothing
    after_update: Callable[[], None] | None = None
    # LoRA: what checkpoints export (`mgrpo.lora.LoraExport`: merged weights or adapters)
    lora_export: Any | None = None


@dataclass
class StepBatch:
    """B prompts: their token ids and (diagnostic-only, unless reward == truth) answers.

    Under data parallelism it is this rank's slice: global prompt indices
    [prompt_offset, prompt_offset + B) out of `global_prompts` (None = B, one process)."""

    prompt_ids: list[list[int]]
    answers: list[str | None]
    prompt_offset: int = 0
    global_prompts: int | None = None


@dataclass
class StageTimer:
    times: dict[str, float] = field(default_factory=dict)

    @contextmanager
    def __call__(self, stage: str) -> Iterator[None]:
        start = time.perf_counter()
        try:
            yield
        finally:
            self.times[stage] = self.times.get(stage, 0.0) + time.perf_counter() - start


class NonFiniteLossError(RuntimeError):
    """The loss or gradient norm was NaN/inf; the update was skipped."""


def step_seed(seed: int, step: int, stream: int, prompt: int = 0) -> int:
    """Deterministic sampling seed of (seed, step, stream[, global prompt index]), independent
    of any global RNG state; `prompt` 0 is the seed of a whole step's batched call."""
    return (seed * 1_000_003 + step * 7_919 + stream * 104_729 + prompt * 15_485_863) % (2**31 - 1)


def _generate(engine: Any, batch: StepBatch, n: int, params: Callable[[int], SamplingParams],
              per_prompt: bool) -> RolloutBatch:
    """n rollouts per prompt of the batch. `per_prompt`: one call per prompt seeded by its
    GLOBAL index (world-size independent samples); else one call seeded by the first index."""
    if not per_prompt:
        return engine.generate(batch.prompt_ids, n=n, params=params(batch.prompt_offset))
    parts = [
        engine.generate([ids], n=n, params=params(batch.prompt_offset + b + 1))
        for b, ids in enumerate(batch.prompt_ids)
    ]
    return _concat(parts)


def _generate_both(models: StepModels, batch: StepBatch, n_policy: int, n_momentum: int,
                   params: Callable[[int], Callable[[int], SamplingParams]],
                   per_prompt: bool) -> tuple[RolloutBatch, RolloutBatch | None]:
    """Policy rollouts (stream 0) and momentum rollouts (stream 1, none when n_momentum = 0).

    When both engines can share one decode loop (`fast` engines over same-shaped models:
    `FastEngine.generate_joint`), they do: the momentum model's rows ride in the policy's
    batch, so M-GRPO pays for one loop instead of two. Both streams are then drawn from the
    policy stream's seed (still a deterministic function of (seed, step, prompt)).
    """
    policy_engine, momentum_engine = models.policy_engine, models.momentum_engine
    if not n_momentum:
        return _generate(policy_engine, batch, n_policy, params(0), per_prompt), None
    # exact type check: a wrapper (LoRA's ScopedEngine swaps adapters around each call) must
    # keep its own generate
    if not (type(policy_engine) is FastEngine and type(momentum_engine) is FastEngine):
        return (_generate(policy_engine, batch, n_policy, params(0), per_prompt),
                _generate(momentum_engine, batch, n_momentum, params(1), per_prompt))

    def joint(prompt_ids: list[list[int]], prompt: int) -> list[RolloutBatch]:
        groups = [(policy_engine, n_policy, params(0)(prompt)),
                  (momentum_engine, n_momentum, params(1)(prompt))]
        return policy_engine.generate_joint(prompt_ids, groups)

    if not per_prompt:
        policy, momentum = joint(batch.prompt_ids, batch.prompt_offset)
        return policy, momentum
    parts = [joint([ids], batch.prompt_offset + b + 1) for b, ids in enumerate(batch.prompt_ids)]
    return _concat([p for p, _ in parts]), _concat([m for _, m in parts])


def _concat(parts: list[RolloutBatch]) -> RolloutBatch:
    """Prompt-major concatenation of single-prompt batches (right-padded to the widest)."""
    width = max(p.response_ids.shape[1] for p in parts)

    def pad(t: torch.Tensor, value: Any) -> torch.Tensor:
        return torch.nn.functional.pad(t, (0, width - t.shape[1]), value=value)

    return RolloutBatch(  # padding ids are never read (masked everywhere)
        prompt_index=torch.cat([p.prompt_index + i for i, p in enumerate(parts)]),
        response_ids=torch.cat([pad(p.response_ids, 0) for p in parts]),
        response_mask=torch.cat([pad(p.response_mask, False) for p in parts]),
        logprobs=torch.cat([pad(p.logprobs, 0.0) for p in parts]),
        entropies=torch.cat([pad(p.entropies, 0.0) for p in parts]),
        lengths=torch.cat([p.lengths for p in parts]),
        finish_reasons=[r for p in parts for r in p.finish_reasons],
    )


def _score(model: torch.nn.Module, *args: Any, **kwargs: Any) -> tuple[torch.Tensor, torch.Tensor]:
    """score_responses, through the FSDP-registered forward method when the model is sharded."""
    method = getattr(model, SCORE_METHOD, None)
    if method is not None:
        return method(*args, **kwargs)
    return score_responses(model, *args, **kwargs)


def _lockstep(ctx: DistContext, chunks: list[torch.Tensor], sharded: bool) -> list[torch.Tensor | None]:
    """FSDP forwards are collectives: every rank must run as many micro-batches as the
    busiest one; the shortfall is filled with None (a zero-weight dummy micro-batch)."""
    if not (sharded and ctx.world_size > 1):
        return list(chunks)
    most = int(all_reduce(ctx, [len(chunks)], "max", stage="micro-batch count")[0])
    return list(chunks) + [None] * (most - len(chunks))


class _CachedEquivalence:
    """`equivalent(answer, representative)` memoised across a whole step (one checker call
    per distinct ordered pair; identical strings never reach the checker)."""

    def __init__(self, checker: Any) -> None:
        self.checker = checker
        self.memo: dict[tuple[str, str], bool] = {}

    def __call__(self, a: str, b: str) -> bool:
        if a == b:
            return True
        key = (a, b)
        if key not in self.memo:
            self.memo[key] = bool(self.checker.equivalent(a, b))
        return self.memo[key]


def _decode_answers(tokenizer: Any, rollouts: RolloutBatch, kind: str) -> list[str | None]:
    ids = [row[mask].tolist() for row, mask in zip(rollouts.response_ids, rollouts.response_mask)]
    texts = tokenizer.batch_decode(ids, skip_special_tokens=True)
    return [extract_answer(text, kind=kind) for text in texts]


def _rows(rollouts: RolloutBatch, index: torch.Tensor) -> RolloutBatch:
    """Sub-batch of rollouts by row index, trimmed to its longest response."""
    mask = rollouts.response_mask[index]
    width = max(int(mask.sum(dim=1).max().item()), 1) if len(index) else 1
    return RolloutBatch(
        prompt_index=rollouts.prompt_index[index],
        response_ids=rollouts.response_ids[index, :width],
        response_mask=mask[:, :width],
        logprobs=rollouts.logprobs[index, :width],
        entropies=rollouts.entropies[index, :width],
        lengths=rollouts.lengths[index],
        finish_reasons=[rollouts.finish_reasons[i] for i in index.tolist()],
    )


def _vote_all(
    answers: list[list[str | None]], keep: torch.Tensor, equivalent: Callable, min_share: float
) -> list[Vote]:
    votes = []
    for row_answers, row_keep in zip(answers, keep.tolist()):
        pool = [a if k else None for a, k in zip(row_answers, row_keep)]
        votes.append(majority_vote(pool, equivalent, min_share=min_share))
    return votes


def _rewards(
    answers: list[list[str | None]],  # (B, M) policy train rollouts
    targets: list[str | None],  # (B,) pseudo-label or ground truth
    equivalent: Callable,
) -> torch.Tensor:
    """1.0 where a rollout's answer is equivalent to its prompt's target, else 0.0 (no target
    or no parsed answer -> 0)."""
    rows = [
        [float(t is not None and a is not None and equivalent(a, t)) for a in row]
        for row, t in zip(answers, targets)
    ]
    return torch.tensor(rows, dtype=torch.float32)  # (B, M)


def train_step(models: StepModels, batch: StepBatch, cfg: Config, spec: AlgorithmSpec, step: int) -> dict[str, Any]:
    """Run one training step in place (optimizer, scheduler, momentum); return its metrics.

    Raises NonFiniteLossError (after zeroing grads, without stepping) when the loss or the
    gradient norm is not finite, so the caller can count and stop after repeated failures.
    """
    timer = StageTimer()
    step_start = time.perf_counter()
    gen = cfg.generation
    B = len(batch.prompt_ids)
    M, V, N = spec.policy_rollouts, spec.vote_only_rollouts, spec.momentum_rollouts
    equivalent = _CachedEquivalence(models.checker)

    ctx = models.dist
    per_prompt = cfg.distributed.seed_per_prompt

    def params(stream: int) -> Callable[[int], SamplingParams]:
        return lambda prompt: SamplingParams(
            max_new_tokens=gen.max_new_tokens,
            temperature=gen.temperature,
            top_p=gen.top_p,
            top_k=gen.top_k,
            stop_token_ids=models.stop_token_ids,
            seed=step_seed(cfg.seed, step, stream, prompt),
        )

    # ---- generate ------------------------------------------------------------------
    with timer("generate"):
        policy_rollouts, momentum_rollouts = _generate_both(models, batch, M + V, N, params, per_prompt)

    # ---- score: entropies, filter, answers, vote, rewards -------------------------------
    with timer("score"):
        policy_entropy = trajectory_entropy(
            policy_rollouts.entropies, policy_rollouts.response_mask
        ).view(B, M + V)  # (B, M+V)
        if momentum_rollouts is not None:
            momentum_entropy = trajectory_entropy(
                momentum_rollouts.entropies, momentum_rollouts.response_mask
            ).view(B, N)  # (B, N)
            entropy = torch.cat([policy_entropy, momentum_entropy], dim=1)  # (B, G)
        else:
            momentum_entropy = None
            entropy = policy_entropy
        keep = iqr_keep_mask(entropy, spec.iqr_k)  # (B, G)

        kind = cfg.data.answer_kind
        flat = _decode_answers(models.tokenizer, policy_rollouts, kind)
        answers = [flat[b * (M + V) : (b + 1) * (M + V)] for b in range(B)]  # (B, M+V)
        if momentum_rollouts is not None:
            flat_m = _decode_answers(models.tokenizer, momentum_rollouts, kind)
            answers = [row + flat_m[b * N : (b + 1) * N] for b, row in enumerate(answers)]
        policy_answers = [row[:M] for row in answers]  # (B, M)

        votes: list[Vote] = []
        if spec.reward == "vote":
            votes = _vote_all(answers, keep, equivalent, spec.min_vote_share)
            rewards = _rewards(policy_answers, [v.label for v in votes], equivalent)
        elif spec.reward == "truth":
            if any(a is None for a in batch.answers):
                raise ValueError("preset grpo needs a ground-truth answer for every prompt")
            rewards = _rewards(policy_answers, batch.answers, equivalent)
        else:  # self-certainty (Intuitor)
            train_rows = _policy_train_rows(B, M, V)
            sub = _rows(policy_rollouts, train_rows)
            rewards = self_certainty(
                models.policy_full or models.policy,
                [batch.prompt_ids[int(i)] for i in sub.prompt_index],
                sub.response_ids,
                sub.response_mask,
                gen.temperature,
            ).view(B, M)

    # ---- advantage ----------------------------------------------------------------------
    with timer("advantage"):
        in_loss = keep[:, :M].clone() if spec.filter_in_loss else torch.ones(B, M, dtype=torch.bool)
        advantages = get_advantage_estimator(cfg.algorithm.advantage)(rewards, in_loss)  # (B, M)

    # ---- train: logp_old / logp_ref before any update, then U updates with accumulation ----
    train_rows = _policy_train_rows(B, M, V)  # rows of policy_rollouts that train, (B*M,)
    train_rollouts = _rows(policy_rollouts, train_rows)
    loss_rows = in_loss.flatten().nonzero().flatten()  # (L,) indices into train_rollouts
    loss_rollouts = _rows(train_rollouts, loss_rows)  # (L, T)
    algo = cfg.algorithm
    micro = cfg.trainer.micro_batch_size
    use_ref = models.reference is not None and algo.kl_coef > 0
    ref_scope = models.reference_scope or contextlib.nullcontext
    sharded_ref = use_ref and hasattr(models.reference, SCORE_METHOD)
    updates = cfg.trainer.updates_per_step
    # update 0 uses logp.detach() as logp_old (same weights); later updates need the pass
    need_old = updates > 1
    with timer("score"), torch.no_grad():
        logp_old = torch.zeros(loss_rollouts.response_ids.shape) if need_old else None  # (L, T)
        logp_ref = torch.zeros(loss_rollouts.response_ids.shape) if use_ref else None
        score_chunks = list(_chunks(len(loss_rows), micro)) if (need_old or use_ref) else []
        for chunk in _lockstep(ctx, score_chunks, sharded_ref):
            dummy = chunk is None  # FSDP lockstep filler: a forward whose result is dropped
            mb = _rows(train_rollouts, torch.arange(1)) if dummy else _rows(loss_rollouts, chunk)
            prompts = [batch.prompt_ids[int(i)] for i in mb.prompt_index]
            width = mb.response_ids.shape[1]
            if not dummy and logp_old is not None:
                old, _ = _score(
                    models.policy_full or models.policy, prompts, mb.response_ids,
                    mb.response_mask, gen.temperature, with_grad=False,
                )
                logp_old[chunk, :width] = old.float().cpu()
            if logp_ref is not None:
                with ref_scope():
                    ref, _ = _score(
                        models.reference, prompts, mb.response_ids, mb.response_mask,
                        gen.temperature, with_grad=False,
                    )
                if not dummy:
                    logp_ref[chunk, :width] = ref.float().cpu()
    loss_adv = advantages.flatten()[loss_rows]  # (L,)

    metrics_acc: dict[str, float] = {"loss/pg": 0.0, "loss/kl": 0.0, "loss/clip_fraction": 0.0}
    grad_norms: list[float] = []
    B_global = batch.global_prompts or B
    sharded = hasattr(models.policy, SCORE_METHOD)
    trainable = [p for p in models.policy.parameters() if p.requires_grad]
    for update in range(updates):
        # update u trains on the GLOBAL prompts [lo, hi); local prompt b is global offset + b
        lo, hi = update * B_global // updates, (update + 1) * B_global // updates
        global_index = loss_rollouts.prompt_index + batch.prompt_offset
        positions = (global_index >= lo) & (global_index < hi)
        positions = positions.nonzero().flatten()  # (L_u,) rows of this update
        local_counts = [float(loss_rollouts.response_mask[positions].sum()), float(len(positions))]
        n_tokens, n_seqs = all_reduce(ctx, local_counts, stage="loss normalisers")
        with timer("train"):
            models.optimizer.zero_grad(set_to_none=True)
            for chunk in _lockstep(ctx, list(_chunks(len(positions), micro)), sharded):
                dummy = chunk is None  # FSDP lockstep filler: zero-weight loss on one row
                rows = positions[:1] if dummy else positions[chunk]
                mb = _rows(train_rollouts, torch.arange(1)) if dummy else _rows(loss_rollouts, rows)
                width = mb.response_ids.shape[1]
                device = mb.response_ids.device
                prompts = [batch.prompt_ids[int(i)] for i in mb.prompt_index]
                logp, _ = _score(
                    models.policy, prompts, mb.response_ids, mb.response_mask, gen.temperature,
                    with_grad=True,
                )
                if dummy:
                    (logp.sum() * 0.0).backward()
                    continue
                loss, stats = policy_loss(
                    logp,
                    logp.detach() if update == 0 else logp_old[rows, :width].to(device),
                    None if logp_ref is None else logp_ref[rows, :width].to(device),
                    loss_adv[rows].to(device),
                    mb.response_mask,
                    clip=algo.clip,
                    kl_coef=algo.kl_coef,
                    agg=algo.loss_agg,
                    num_tokens_global=n_tokens,
                    num_seqs_global=n_seqs,
                    norm_length=gen.max_new_tokens,
                )
                if not torch.isfinite(loss) and ctx.world_size == 1:  # W > 1: the global
                    models.optimizer.zero_grad(set_to_none=True)
                    raise NonFiniteLossError(f"step {step}: loss is {loss.item()}")
                # (grad norm below, the same on every rank, catches a NaN on any rank)
                (loss * ctx.grad_scale if ctx.grad_scale != 1.0 else loss).backward()
                # each micro-batch's loss is its partial sum over the update's GLOBAL
                # normaliser, so the sum over micro-batches (and ranks) is the update's loss
                metrics_acc["loss/pg"] += stats["pg_loss"] / updates
                metrics_acc["loss/kl"] += stats["kl"] / updates
                metrics_acc["loss/clip_fraction"] += (
                    stats["clip_fraction"] * stats["num_tokens"] / max(n_tokens, 1.0) / updates
                )
            all_reduce_grads_(ctx, trainable)  # replicated DP only; FSDP reduced in backward
            grad_norm = torch.nn.utils.clip_grad_norm_(trainable, cfg.optim.max_grad_norm)
            grad_norm = grad_norm.full_tensor() if hasattr(grad_norm, "full_tensor") else grad_norm
            if not torch.isfinite(grad_norm):
                models.optimizer.zero_grad(set_to_none=True)
                raise NonFiniteLossError(f"step {step}: gradient norm is {grad_norm.item()}")
            grad_norms.append(float(grad_norm))
            models.optimizer.step()
            models.optimizer.zero_grad(set_to_none=True)
        with timer("sync"):
            if models.after_update is not None:
                models.after_update()
        with timer("ema"):
            if models.momentum is not None:
                models.momentum.update_(models.policy, spec.momentum)
    lr = models.optimizer.param_groups[0]["lr"]
    models.scheduler.step()

    local = _metric_inputs(
        batch, policy_rollouts, policy_entropy, momentum_entropy, keep, rewards, votes,
        policy_answers, equivalent, M,
    )
    metrics = _step_metrics(_merge_inputs(gather_objects(ctx, local, stage="step metrics")), M)
    loss_keys = list(metrics_acc)
    metrics.update(zip(loss_keys, all_reduce(ctx, [metrics_acc[k] for k in loss_keys])))
    metrics["grad_norm"] = sum(grad_norms) / len(grad_norms)
    metrics["lr"] = lr
    stages = ("generate", "score", "advantage", "train", "sync", "ema")
    times = [timer.times.get(stage, 0.0) for stage in stages]
    times.append(time.perf_counter() - step_start)
    times = all_reduce(ctx, times, "max", stage="step timings")  # the slowest rank sets the pace
    for stage, value in zip((*stages, "step"), times):
        if stage != "sync" or models.after_update is not None:
            metrics[f"time/{stage}"] = value
    return metrics


def _chunks(n: int, size: int) -> Iterator[torch.Tensor]:
    """Index tensors [0, size), [size, 2 size), ... covering range(n)."""
    for start in range(0, n, size):
        yield torch.arange(start, min(start + size, n))


def _policy_train_rows(B: int, M: int, V: int) -> torch.Tensor:
    """Row indices (prompt-major) of the first M of each prompt's M + V policy rollouts."""
    return (torch.arange(B).unsqueeze(1) * (M + V) + torch.arange(M).unsqueeze(0)).flatten()


def _mean(values: list[float]) -> float:
    return sum(values) / len(values) if values else 0.0


def _metric_inputs(
    batch: StepBatch,
    policy_rollouts: RolloutBatch,
    policy_entropy: torch.Tensor,
    momentum_entropy: torch.Tensor | None,
    keep: torch.Tensor,
    rewards: torch.Tensor,
    votes: list[Vote],
    policy_answers: list[list[str | None]],
    equivalent: Callable,
    M: int,
) -> dict[str, Any]:
    """This rank's per-prompt / per-rollout statistics behind the step metrics: small,
    picklable, concatenable over ranks (prompt-major, so rank order = global order)."""
    B = len(batch.prompt_ids)
    train_rows = _policy_train_rows(B, M, policy_entropy.shape[1] - M)
    out: dict[str, Any] = {
        # on CPU: they are pickled to the other ranks (a CUDA tensor would land on their GPU 0)
        "rewards": rewards.float().cpu(),  # (B, M)
        "policy_entropy": policy_entropy[:, :M].float().cpu(),  # (B, M)
        "momentum_entropy": None if momentum_entropy is None else momentum_entropy.float().cpu(),
        "keep": keep.cpu(),  # (B, G)
        "votes": [(v.label is None, float(v.share)) for v in votes],
        "lengths": policy_rollouts.lengths[train_rows].float().cpu(),  # (B*M,)
        "truncated": [float(policy_rollouts.finish_reasons[int(i)] == "length") for i in train_rows],
        "parsed": [float(a is not None) for row in policy_answers for a in row],
        "policy_correct": None,
        "label_correct": None,
    }
    if all(a is not None for a in batch.answers):
        truth = batch.answers
        out["policy_correct"] = [
            float(a is not None and equivalent(a, t)) for row, t in zip(policy_answers, truth) for a in row
        ]
        if votes:
            out["label_correct"] = [
                float(v.label is not None and equivalent(v.label, t)) for v, t in zip(votes, truth)
            ]
    return out


def _merge_inputs(parts: list[dict[str, Any]]) -> dict[str, Any]:
    """Concatenate the ranks' `_metric_inputs` (a key missing on any rank -> None)."""
    if len(parts) == 1:
        return parts[0]
    merged: dict[str, Any] = {}
    for key in parts[0]:
        values = [p[key] for p in parts]
        if any(v is None for v in values):
            merged[key] = None
        elif isinstance(values[0], torch.Tensor):
            merged[key] = torch.cat([v.cpu() for v in values])
        else:
            merged[key] = [x for v in values for x in v]
    return merged


def _step_metrics(inputs: dict[str, Any], M: int) -> dict[str, Any]:
    """The step's scalar metrics from (gathered) per-rollout statistics."""
    rewards = inputs["rewards"]
    votes = inputs["votes"]
    momentum_entropy = inputs["momentum_entropy"]
    out: dict[str, Any] = {
        "reward/mean": float(rewards.mean()),
        "reward/std": float(rewards.std()) if rewards.numel() > 1 else 0.0,
        "label/vote_share": _mean([share for none, share in votes if not none]),
        "label/none_fraction": _mean([float(none) for none, _ in votes]) if votes else 0.0,
        "entropy/policy": float(inputs["policy_entropy"].mean()),
        "entropy/momentum": float(momentum_entropy.mean()) if momentum_entropy is not None else math.nan,
        "filter/dropped_fraction": float((~inputs["keep"]).float().mean()),
        "response/length_mean": float(inputs["lengths"].mean()),
        "response/truncated_fraction": _mean(inputs["truncated"]),
        "answers/parsed_fraction": _mean(inputs["parsed"]),
    }
    if inputs["policy_correct"] is not None:
        out["policy/accuracy"] = _mean(inputs["policy_correct"])
        if inputs["label_correct"] is not None:
            out["label/accuracy"] = _mean(inputs["label_correct"])
    return out
