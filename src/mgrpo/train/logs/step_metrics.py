"""The metrics of a step: per-rollout statistics (`metric_inputs`, a `MetricInputs` record),
gathered over ranks (`MetricInputs.cat`), reduced by the one-rank formulas (`step_metrics`),
plus losses and timings (`loss_and_time_metrics`). Metric inputs are on the CPU: they are
pickled to the other ranks.

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
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field, fields
from typing import Any

import torch

from mgrpo.answers.equivalence import Equivalence
from mgrpo.core.voting import vote_groups
from mgrpo.methods.inputs import Rollouts
from mgrpo.parallel.distributed import DistContext, all_reduce
from mgrpo.train.logs.diagnostics import pool_diagnostics
from mgrpo.train.step_shaping import ShapingStats
from mgrpo.train.step_updates import policy_train_rows
from mgrpo.train.types import LossStats, StepBatch

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


def _mean(values: Sequence[float]) -> float:
    return sum(values) / len(values) if values else 0.0


@dataclass(frozen=True)
class MetricInputs:
    """One rank's per-prompt / per-rollout statistics behind the step metrics: small,
    picklable (tensors on the CPU: they are pickled to the other ranks, and a CUDA tensor
    would land on their GPU 0), prompt-major, so `cat` over the ranks gives the global order.
    Shapes: B prompts, M train rollouts, G the pool; None: not measured (unlabelled data)."""

    rewards: torch.Tensor  # (B, M) fp32 rewards of the train rollouts
    policy_entropy: torch.Tensor  # (B, M) trajectory entropies of the train rollouts
    momentum_entropy: torch.Tensor | None  # (B, N); None without momentum rollouts
    keep: torch.Tensor  # (B, G) bool IQR keep mask
    votes: list[tuple[bool, float]]  # (B,) (no label?, winner share); [] when the step does not vote
    ties: list[bool]  # (B,) the vote was a tie; [] when the step does not vote
    lengths: torch.Tensor  # (B*M,) response lengths of the train rollouts
    truncated: list[float]  # (B*M,) 1.0 where the train rollout hit max_new_tokens
    parsed: list[float]  # (B*M,) 1.0 where the train rollout's answer parsed
    n_policy: list[int]  # (B,) M + V, per prompt (so it concatenates)
    policy_correct: list[float] | None  # (B*M,) the train rollout's answer is right
    label_correct: list[float] | None  # (B,) the vote's label is right (voting steps only)
    pool_correct: list[list[bool]] | None  # (B, G) each pool answer is right
    majority_correct: list[bool] | None  # (B,) the plain majority of the whole pool is right
    shaping: ShapingStats  # (B,) per-prompt values of the shaping options that are on
    # rollout engine vs trainer (an engine that reports its own log-probs, vllm; else None):
    logp_gap_sum: torch.Tensor | None = None  # (B*M,) sum_t |logp - logp_sampler| per train row
    logp_gap_max: torch.Tensor | None = None  # (B*M,) max_t of the same
    momentum_gap_max: torch.Tensor | None = None  # (B*N,) the momentum engine's max_t

    @staticmethod
    def cat(parts: Sequence[MetricInputs]) -> MetricInputs:
        """Concatenate the ranks' inputs, prompt-major (a field None on any rank -> None)."""
        if len(parts) == 1:
            return parts[0]

        def joined(name: str) -> Any:
            values = [getattr(p, name) for p in parts]
            if any(v is None for v in values):
                return None
            if isinstance(values[0], torch.Tensor):
                return torch.cat([v.cpu() for v in values])
            return [x for v in values for x in v]

        names = [f.name for f in fields(MetricInputs) if f.name != "shaping"]
        return MetricInputs(**{name: joined(name) for name in names},
                            shaping=ShapingStats.cat([p.shaping for p in parts]))


def metric_inputs(batch: StepBatch, rollouts: Rollouts, rewards: torch.Tensor,
                  equivalent: Equivalence, shaping: ShapingStats) -> MetricInputs:
    """This rank's `MetricInputs`. `rewards`: (B, M) on D; `shaping`: the per-prompt values of
    the shaping options that are on (`train/step_shaping.py`)."""
    B, M = len(batch.prompt_ids), rollouts.train_rollouts
    policy_rollouts, policy_entropy = rollouts.policy, rollouts.policy_entropy
    votes, policy_answers = rollouts.votes, rollouts.policy_answers
    train_rows = policy_train_rows(B, M, policy_entropy.shape[1] - M)
    policy_correct = label_correct = pool_correct = majority_correct = None
    if all(a is not None for a in batch.answers):
        truth = batch.answers
        pool_correct = [[a is not None and equivalent(a, t) for a in row]
                        for row, t in zip(rollouts.answers, truth)]
        plain = vote_groups(rollouts.answers, equivalent)  # maj@G: the whole pool, one vote each
        majority_correct = [v.label is not None and equivalent(v.label, t)
                            for v, t in zip(plain, truth)]
        policy_correct = [float(a is not None and equivalent(a, t))
                          for row, t in zip(policy_answers, truth) for a in row]
        if votes:
            label_correct = [float(v.label is not None and equivalent(v.label, t))
                             for v, t in zip(votes, truth)]
    momentum_entropy = rollouts.momentum_entropy
    logp_gap_sum = logp_gap_max = momentum_gap_max = None
    momentum = rollouts.momentum
    if momentum is not None and momentum.sampler_logprobs is not None:  # (B*N,) its own push
        momentum_gap_max = ((momentum.logprobs - momentum.sampler_logprobs).abs()
                            * momentum.response_mask).amax(1).float().cpu()
    sampler = policy_rollouts.sampler_logprobs  # the engine's own log-probs (vllm), or None
    if sampler is not None:  # |trainer's logp - sampler's logp| per token, train rows
        gap = ((policy_rollouts.logprobs - sampler).abs()
               * policy_rollouts.response_mask)[train_rows].float()  # (B*M, T)
        logp_gap_sum, logp_gap_max = gap.sum(1).cpu(), gap.amax(1).cpu()
    return MetricInputs(
        rewards=rewards.float().cpu(),
        policy_entropy=policy_entropy[:, :M].float().cpu(),
        momentum_entropy=None if momentum_entropy is None else momentum_entropy.float().cpu(),
        keep=rollouts.keep.cpu(),
        votes=[(v.label is None, float(v.share)) for v in votes],
        ties=[bool(v.tie) for v in votes],
        lengths=policy_rollouts.lengths[train_rows].float().cpu(),
        truncated=[float(policy_rollouts.finish_reasons[i] == "length")
                   for i in train_rows.tolist()],
        parsed=[float(a is not None) for row in policy_answers for a in row],
        n_policy=[policy_entropy.shape[1]] * B,
        policy_correct=policy_correct,
        label_correct=label_correct,
        pool_correct=pool_correct,
        majority_correct=majority_correct,
        shaping=shaping,
        logp_gap_sum=logp_gap_sum,
        logp_gap_max=logp_gap_max,
        momentum_gap_max=momentum_gap_max,
    )


def step_metrics(inputs: MetricInputs, M: int) -> dict[str, float]:
    """The step's scalar metrics from (gathered) per-rollout statistics."""
    rewards, votes = inputs.rewards, inputs.votes
    momentum_entropy = inputs.momentum_entropy
    out: dict[str, float] = {
        "reward/mean": float(rewards.mean()),
        "reward/std": float(rewards.std()) if rewards.numel() > 1 else 0.0,
        "label/vote_share": _mean([share for none, share in votes if not none]),
        "label/none_fraction": _mean([float(none) for none, _ in votes]) if votes else 0.0,
        "entropy/policy": float(inputs.policy_entropy.mean()),
        "entropy/momentum": (float(momentum_entropy.mean()) if momentum_entropy is not None
                             else math.nan),
        "filter/dropped_fraction": float((~inputs.keep).float().mean()),
        "response/length_mean": float(inputs.lengths.mean()),
        "response/truncated_fraction": _mean(inputs.truncated),
        "answers/parsed_fraction": _mean(inputs.parsed),
    }
    if inputs.policy_correct is not None:
        out["policy/accuracy"] = _mean(inputs.policy_correct)
        if inputs.label_correct is not None:
            out["label/accuracy"] = _mean(inputs.label_correct)
    out.update(pool_diagnostics(
        ties=inputs.ties if votes else None, keep=inputs.keep,
        n_policy=inputs.n_policy[0] if inputs.n_policy else M, rewards=rewards,
        pool_correct=inputs.pool_correct, majority_correct=inputs.majority_correct))
    if inputs.shaping.dynamic_filtered is not None:
        out["dynamic/filtered_fraction"] = _mean(inputs.shaping.dynamic_filtered)
    if inputs.shaping.overlong_penalty is not None:
        out["reward/overlong_penalty_mean"] = _mean(inputs.shaping.overlong_penalty)
    if inputs.logp_gap_sum is not None and inputs.logp_gap_max is not None:
        tokens = float(inputs.lengths.sum())  # rollout engine vs trainer, per response token
        out["rollout/logp_mismatch_mean"] = float(inputs.logp_gap_sum.sum()) / max(tokens, 1.0)
        out["rollout/logp_mismatch_max"] = float(inputs.logp_gap_max.max())
    if inputs.momentum_gap_max is not None:  # the momentum engine's, likewise
        out["rollout/momentum_logp_mismatch_max"] = float(inputs.momentum_gap_max.max())
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
