"""The metrics of a step: per-rollout statistics (`metric_inputs`), gathered over ranks
(`merge_inputs`), reduced by the one-rank formulas (`step_metrics`), plus losses and timings
(`loss_and_time_metrics`). Metric inputs are on the CPU: they are pickled to the other ranks.

Timers (`StageTimer`, metrics `time/<stage>`, seconds, the slowest rank's), each named for
what it times:

    generate   policy and momentum rollouts (one joint decode loop with `fast` engines)
    vote       trajectory entropies, IQR keep mask, answer parsing and the majority vote
    reward     the rewards (math-verify for vote/truth, a forward for self-certainty) and
               the group advantages
    logprobs   the frozen teacher-forced passes before any update (logp_old, logp_ref)
    train      forward/backward and optimizer step of every update
    sync       after each optimizer step: refreshing the generator copy (mixed precision,
               FSDP) and pushing the weights into an engine that holds a copy (vllm); reported
               only where there is one
    ema        the momentum model's EMA after each optimizer step (and the push of its weights
               into a vllm engine)
    step       the whole step (metrics included)
"""

from __future__ import annotations

import math
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import torch

from mgrpo.answers.equivalence import Equivalence
from mgrpo.core.voting import vote_groups
from mgrpo.parallel.distributed import DistContext, all_reduce
from mgrpo.train.diagnostics import pool_diagnostics
from mgrpo.train.step_updates import policy_train_rows
from mgrpo.train.types import LossStats, Rollouts, StepBatch

STAGES = ("generate", "vote", "reward", "logprobs", "train", "sync", "ema")


@dataclass
class StageTimer:
    """Wall time per stage (one of `STAGES`). On CUDA the device is synchronised at both ends
    of a stage, so asynchronous kernels are charged to the stage that launched them."""

    times: dict[str, float] = field(default_factory=dict)
    device: torch.device | None = None

    def _sync(self) -> None:
        if self.device is not None and self.device.type == "cuda":
            torch.cuda.synchronize(self.device)

    @contextmanager
    def __call__(self, stage: str) -> Iterator[None]:
        if stage not in STAGES:
            raise ValueError(f"StageTimer: unknown stage {stage!r}; stages: {list(STAGES)}")
        self._sync()
        start = time.perf_counter()
        try:
            yield
        finally:
            self._sync()
            self.times[stage] = self.times.get(stage, 0.0) + time.perf_counter() - start


def _mean(values: list[float]) -> float:
    return sum(values) / len(values) if values else 0.0


def metric_inputs(batch: StepBatch, rollouts: Rollouts, rewards: torch.Tensor,
                  equivalent: Equivalence, shaping: dict[str, list[float]] | None = None
                  ) -> dict[str, Any]:
    """This rank's per-prompt / per-rollout statistics behind the step metrics: small,
    picklable, concatenable over ranks (prompt-major, so rank order = global order).
    `rewards`: (B, M) on D; `shaping`: per-prompt values of the shaping options that are on
    (`train/shaping.py`)."""
    B, M = len(batch.prompt_ids), rollouts.train_rollouts
    policy_rollouts, policy_entropy = rollouts.policy, rollouts.policy_entropy
    momentum_entropy, keep, votes = rollouts.momentum_entropy, rollouts.keep, rollouts.votes
    policy_answers = rollouts.policy_answers
    train_rows = policy_train_rows(B, M, policy_entropy.shape[1] - M)
    out: dict[str, Any] = {
        # on CPU: they are pickled to the other ranks (a CUDA tensor would land on their GPU 0)
        "rewards": rewards.float().cpu(),  # (B, M)
        "policy_entropy": policy_entropy[:, :M].float().cpu(),  # (B, M)
        "momentum_entropy": None if momentum_entropy is None else momentum_entropy.float().cpu(),
        "keep": keep.cpu(),  # (B, G)
        "votes": [(v.label is None, float(v.share)) for v in votes],
        "lengths": policy_rollouts.lengths[train_rows].float().cpu(),  # (B*M,)
        "truncated": [float(policy_rollouts.finish_reasons[i] == "length") for i in train_rows.tolist()],
        "parsed": [float(a is not None) for row in policy_answers for a in row],
        "policy_correct": None,
        "label_correct": None,
        "ties": [bool(v.tie) for v in votes],
        "n_policy": [policy_entropy.shape[1]] * B,  # M + V, per prompt (concatenable)
        "pool_correct": None,
        "majority_correct": None,
        "dynamic_filtered": (shaping or {}).get("dynamic_filtered"),
        "overlong_penalty": (shaping or {}).get("overlong_penalty"),
        "logp_gap_sum": None,
        "logp_gap_max": None,
        "momentum_gap_max": None,
    }
    momentum = rollouts.momentum
    if momentum is not None and momentum.sampler_logprobs is not None:  # (B*N,) its own push
        out["momentum_gap_max"] = ((momentum.logprobs - momentum.sampler_logprobs).abs()
                                   * momentum.response_mask).amax(1).float().cpu()
    sampler = policy_rollouts.sampler_logprobs  # the engine's own log-probs (vllm), or None
    if sampler is not None:  # |trainer's logp - sampler's logp| per token, train rows
        gap = ((policy_rollouts.logprobs - sampler).abs()
               * policy_rollouts.response_mask)[train_rows].float()  # (B*M, T)
        out["logp_gap_sum"], out["logp_gap_max"] = gap.sum(1).cpu(), gap.amax(1).cpu()
    if all(a is not None for a in batch.answers):
        truth = batch.answers
        out["pool_correct"] = [[a is not None and equivalent(a, t) for a in row]
                               for row, t in zip(rollouts.answers, truth)]
        plain = vote_groups(rollouts.answers, equivalent)  # maj@G: the whole pool, one vote each
        out["majority_correct"] = [v.label is not None and equivalent(v.label, t)
                                   for v, t in zip(plain, truth)]
        out["policy_correct"] = [
            float(a is not None and equivalent(a, t)) for row, t in zip(policy_answers, truth) for a in row
        ]
        if votes:
            out["label_correct"] = [
                float(v.label is not None and equivalent(v.label, t)) for v, t in zip(votes, truth)
            ]
    return out


def merge_inputs(parts: list[dict[str, Any]]) -> dict[str, Any]:
    """Concatenate the ranks' `metric_inputs` (a key missing on any rank -> None)."""
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


def step_metrics(inputs: dict[str, Any], M: int) -> dict[str, Any]:
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
    n_policy = inputs.get("n_policy")  # (the diagnostics' inputs are optional in the dict)
    out.update(pool_diagnostics(
        ties=inputs.get("ties") if votes else None, keep=inputs["keep"],
        n_policy=n_policy[0] if n_policy else M, rewards=rewards,
        pool_correct=inputs.get("pool_correct"), majority_correct=inputs.get("majority_correct")))
    if inputs.get("dynamic_filtered") is not None:
        out["dynamic/filtered_fraction"] = _mean(inputs["dynamic_filtered"])
    if inputs.get("overlong_penalty") is not None:
        out["reward/overlong_penalty_mean"] = _mean(inputs["overlong_penalty"])
    if inputs.get("logp_gap_sum") is not None:  # rollout engine vs trainer, per response token
        tokens = float(inputs["lengths"].sum())
        out["rollout/logp_mismatch_mean"] = float(inputs["logp_gap_sum"].sum()) / max(tokens, 1.0)
        out["rollout/logp_mismatch_max"] = float(inputs["logp_gap_max"].max())
    if inputs.get("momentum_gap_max") is not None:  # the momentum engine's, likewise
        out["rollout/momentum_logp_mismatch_max"] = float(inputs["momentum_gap_max"].max())
    return out


def loss_and_time_metrics(ctx: DistContext, stats: LossStats, lr: float,
                          times: dict[str, float], step_time: float,
                          with_sync: bool) -> dict[str, float]:
    """Loss sums (summed over ranks), mean grad norm, lr and `time/*` (max over ranks: the
    slowest rank sets the pace; `time/sync` only when there is a refresh after updates)."""
    keys = list(stats.sums)
    out = dict(zip(keys, all_reduce(ctx, [stats.sums[k] for k in keys])))
    out["grad_norm"] = sum(stats.grad_norms) / len(stats.grad_norms)
    out["lr"] = lr
    values = [times.get(stage, 0.0) for stage in STAGES] + [step_time]
    values = all_reduce(ctx, values, "max", stage="step timings")
    for stage, value in zip((*STAGES, "step"), values):
        if stage != "sync" or with_sync:
            out[f"time/{stage}"] = value
    return out
