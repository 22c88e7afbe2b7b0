"""One M-GRPO training step, top to bottom (docs/design.md §2).

    policy rollouts (M [+ vote-only]) and momentum rollouts (N) for B prompts
    -> trajectory entropies (B, G) -> IQR keep mask -> answers -> majority vote (pseudo-labels)
    -> rewards (B, M) -> loss set -> group advantages -> clipped PG loss (+ k3 KL)
    -> optimizer step(s) -> EMA of the momentum model after each optimizer step.

Every preset (m-grpo, srt, ttrl, intuitor, grpo) runs this same function; what differs is the
`AlgorithmSpec` (see `train/presets.py`), whose `reward` names an entry of `REWARDS`. Stage
names double as timer and metric prefixes: `generate`, `score`, `advantage`, `train`,
`sync`, `ema`. The updates (micro-batching, FSDP lockstep fillers) live in `step_updates.py`,
the metrics in `step_metrics.py`.

Departures from the paper: none in the math. Engineering choices: on the first optimizer
update of a step the policy still has the weights that generated the rollouts, so `logp_old`
is the detached training log-prob itself (ratio == 1 exactly, no extra forward pass); only
when `updates_per_step > 1` is it recomputed by a teacher-forced no-grad pass before any
update, for the later updates. Rollouts outside the loss set are not forwarded at all during
training (their loss mask is 0). With `fast` engines the policy and momentum rollouts are
decoded in one loop (`FastEngine.generate_joint`); every teacher-forced pass runs each distinct
prompt once and shares its KV cache across that prompt's rollouts (`score_responses`).

Device rule. The rollout engines return their tensors on the model's device D (the GPU in a
real run, the CPU in tests). Every tensor indexed by rollout row stays on D for the whole
step: trajectory entropies, the IQR keep mask, rewards, the loss set, advantages, the
`logp_old` / `logp_ref` buffers and every row index (`prompt_index`, `step_updates.chunks`,
`step_updates.policy_train_rows`). Values that exist only on the host (decoded answers,
votes, prompt token lists) are Python objects; a tensor built from them (`_rewards`,
`self_certainty`) is moved to D where it is made. The per-rollout statistics go to the CPU
once, in `step_metrics.metric_inputs`, because they are pickled to the other ranks. LoRA and FSDP change which
module runs a forward, never where its outputs live; validation and `mgrpo eval` read only
Python values out of the rollouts. Mixed precision: the training forward runs under
`StepModels.train_autocast` (bf16 compute over an fp32 master) when it is set.

Modes: the policy is in train mode only for the training forwards (gradient checkpointing
and LoRA dropout act there) and in eval mode for rollouts and every no-grad pass.

Distributed (see `distributed.py`): the batch holds this rank's slice of the step's prompts
(`StepBatch.prompt_offset` / `global_prompts`); loss normalisers are summed over ranks so the
summed gradient equals the 1-rank gradient, and the metrics are computed by the 1-rank
formulas on the gathered per-rollout statistics.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import torch

from mgrpo.answers import extract_answer
from mgrpo.answers.equivalence import Equivalence
from mgrpo.config import Config
from mgrpo.core.advantages import get_advantage_estimator
from mgrpo.core.entropy import trajectory_entropy
from mgrpo.core.filtering import iqr_keep_mask
from mgrpo.core.voting import Vote, vote_groups
from mgrpo.parallel.distributed import SINGLE, DistContext, gather_objects
from mgrpo.rollout import RolloutBatch, SamplingParams
from mgrpo.rollout.fast_engine import FastEngine
from mgrpo.train.momentum import MomentumModel
from mgrpo.train.presets import AlgorithmSpec
from mgrpo.train.rewards import self_certainty
from mgrpo.train.step_metrics import (
    loss_and_time_metrics,
    merge_inputs,
    metric_inputs,
    step_metrics,
)
from mgrpo.train.step_updates import (
    NonFiniteLossError,
    frozen_logprobs,
    loss_set,
    policy_train_rows,
    run_updates,
)

__all__ = ["NonFiniteLossError", "StageTimer", "StepBatch", "StepModels", "step_seed", "train_step"]


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
    # LoRA: what checkpoints export (`mgrpo.train.lora.LoraExport`: merged weights or adapters)
    lora_export: Any | None = None
    # compute dtype of the training forward over an fp32 master (torch.autocast); None = the
    # parameters' own dtype (fp32 runs, pure-bf16 runs, LoRA, FSDP's MixedPrecisionPolicy)
    train_autocast: torch.dtype | None = None


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
    """Wall time per stage. On CUDA the device is synchronised at both ends of a stage, so
    asynchronous kernels are charged to the stage that launched them."""

    times: dict[str, float] = field(default_factory=dict)
    device: torch.device | None = None

    def _sync(self) -> None:
        if self.device is not None and self.device.type == "cuda":
            torch.cuda.synchronize(self.device)

    @contextmanager
    def __call__(self, stage: str) -> Iterator[None]:
        self._sync()
        start = time.perf_counter()
        try:
            yield
        finally:
            self._sync()
            self.times[stage] = self.times.get(stage, 0.0) + time.perf_counter() - start


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
    return RolloutBatch.cat(parts, [1] * len(parts))


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
    ones = [1] * len(parts)  # one prompt per part
    return (RolloutBatch.cat([p for p, _ in parts], ones),
            RolloutBatch.cat([m for _, m in parts], ones))


def _decode_answers(tokenizer: Any, rollouts: RolloutBatch, kind: str) -> list[str | None]:
    ids = [row[mask].tolist() for row, mask in zip(rollouts.response_ids, rollouts.response_mask)]
    texts = tokenizer.batch_decode(ids, skip_special_tokens=True)
    return [extract_answer(text, kind=kind) for text in texts]


def _entropies(policy: RolloutBatch, momentum: RolloutBatch | None, B: int
               ) -> tuple[torch.Tensor, torch.Tensor | None, torch.Tensor]:
    """Trajectory entropies: policy (B, M+V), momentum (B, N) or None, both side by side (B, G)."""
    policy_entropy = trajectory_entropy(policy.entropies, policy.response_mask).view(B, -1)
    if momentum is None:
        return policy_entropy, None, policy_entropy
    momentum_entropy = trajectory_entropy(momentum.entropies, momentum.response_mask).view(B, -1)
    return policy_entropy, momentum_entropy, torch.cat([policy_entropy, momentum_entropy], dim=1)


def _answers(tokenizer: Any, policy: RolloutBatch, momentum: RolloutBatch | None, B: int,
             kind: str) -> list[list[str | None]]:
    """Parsed final answers (B, G): each prompt's policy rollouts, then its momentum ones."""
    flat = _decode_answers(tokenizer, policy, kind)
    per = len(flat) // B
    answers = [flat[b * per : (b + 1) * per] for b in range(B)]  # (B, M+V)
    if momentum is not None:
        flat_m = _decode_answers(tokenizer, momentum, kind)
        n = len(flat_m) // B
        answers = [row + flat_m[b * n : (b + 1) * n] for b, row in enumerate(answers)]
    return answers


def _rewards(
    answers: list[list[str | None]],  # (B, M) policy train rollouts
    targets: list[str | None],  # (B,) pseudo-label or ground truth
    equivalent: Callable,
    device: torch.device | None = None,
) -> torch.Tensor:
    """1.0 where a rollout's answer is equivalent to its prompt's target, else 0.0 (no target
    or no parsed answer -> 0); on `device` (the rollouts' device D)."""
    rows = [
        [float(t is not None and a is not None and equivalent(a, t)) for a in row]
        for row, t in zip(answers, targets)
    ]
    return torch.tensor(rows, dtype=torch.float32, device=device)  # (B, M)


@dataclass
class RewardInputs:
    """What a reward function may read. Tensors on D; `train` = the B*M train rollouts."""

    models: StepModels
    batch: StepBatch
    policy_answers: list[list[str | None]]  # (B, M)
    votes: list[Vote]  # (B,) empty unless the reward is "vote"
    train: RolloutBatch
    equivalent: Callable
    temperature: float
    device: torch.device


def _vote_reward(x: RewardInputs) -> torch.Tensor:
    """Agreement with the prompt's majority-vote pseudo-label (m-grpo, srt, ttrl)."""
    return _rewards(x.policy_answers, [v.label for v in x.votes], x.equivalent, x.device)


def _truth_reward(x: RewardInputs) -> torch.Tensor:
    """Agreement with the ground-truth answer (grpo)."""
    if any(a is None for a in x.batch.answers):
        raise ValueError("preset grpo needs a ground-truth answer for every prompt")
    return _rewards(x.policy_answers, x.batch.answers, x.equivalent, x.device)


def _self_certainty_reward(x: RewardInputs) -> torch.Tensor:
    """Self-certainty of each rollout under the policy that sampled it (intuitor)."""
    B, M = len(x.policy_answers), len(x.policy_answers[0])
    return self_certainty(
        x.models.policy_full or x.models.policy,
        [x.batch.prompt_ids[i] for i in x.train.prompt_index.tolist()],
        x.train.response_ids, x.train.response_mask, x.temperature,
    ).to(x.device).view(B, M)


#: AlgorithmSpec.reward -> (B, M) rewards on D.
REWARDS: dict[str, Callable[[RewardInputs], torch.Tensor]] = {
    "vote": _vote_reward,
    "truth": _truth_reward,
    "self_certainty": _self_certainty_reward,
}


def _sampling(models: StepModels, cfg: Config, step: int) -> Callable[[int], Callable[[int], SamplingParams]]:
    """stream -> (global prompt index -> SamplingParams seeded by (seed, step, stream, prompt))."""
    gen = cfg.generation

    def params(stream: int) -> Callable[[int], SamplingParams]:
        return lambda prompt: SamplingParams(
            max_new_tokens=gen.max_new_tokens, temperature=gen.temperature, top_p=gen.top_p,
            top_k=gen.top_k, stop_token_ids=models.stop_token_ids,
            seed=step_seed(cfg.seed, step, stream, prompt),
        )

    return params


def train_step(models: StepModels, batch: StepBatch, cfg: Config, spec: AlgorithmSpec, step: int) -> dict[str, Any]:
    """Run one training step in place (optimizer, scheduler, momentum); return its metrics.

    Raises NonFiniteLossError (after zeroing grads, without stepping) when the loss or the
    gradient norm is not finite, so the caller can count and stop after repeated failures.
    """
    timer = StageTimer(device=_model_device(models.policy))
    step_start = time.perf_counter()
    B = len(batch.prompt_ids)
    M, V, N = spec.policy_rollouts, spec.vote_only_rollouts, spec.momentum_rollouts
    equivalent = Equivalence(models.checker)

    with timer("generate"):
        policy, momentum = _generate_both(models, batch, M + V, N, _sampling(models, cfg, step),
                                          cfg.distributed.seed_per_prompt)
    with timer("score"):
        policy_entropy, momentum_entropy, entropy = _entropies(policy, momentum, B)  # (B, G)
        keep = iqr_keep_mask(entropy, spec.iqr_k)  # (B, G) on D
        answers = _answers(models.tokenizer, policy, momentum, B, cfg.data.answer_kind)  # (B, G)
        policy_answers = [row[:M] for row in answers]  # (B, M)
        votes = (vote_groups(answers, equivalent, spec.min_vote_share, keep=keep.tolist())
                 if spec.reward == "vote" else [])
        train = policy.select(policy_train_rows(B, M, V, keep.device))  # (B*M, T)
        rewards = REWARDS[spec.reward](RewardInputs(
            models, batch, policy_answers, votes, train, equivalent, cfg.generation.temperature,
            keep.device))  # (B, M)
    with timer("advantage"):
        in_loss = (keep[:, :M].clone() if spec.filter_in_loss
                   else torch.ones(B, M, dtype=torch.bool, device=keep.device))  # (B, M)
        advantages = get_advantage_estimator(cfg.algorithm.advantage)(rewards, in_loss)  # (B, M)
    ls = loss_set(train, in_loss, advantages)
    with timer("score"):
        logp_old, logp_ref = frozen_logprobs(models, batch.prompt_ids, cfg, ls)
    sums, grad_norms = run_updates(models, batch, cfg, spec.momentum, step, ls, logp_old, logp_ref, timer)
    lr = models.optimizer.param_groups[0]["lr"]
    models.scheduler.step()

    local = metric_inputs(batch, policy, policy_entropy, momentum_entropy, keep, rewards, votes,
                          policy_answers, equivalent, M)
    metrics = step_metrics(merge_inputs(gather_objects(models.dist, local, stage="step metrics")), M)
    metrics.update(loss_and_time_metrics(models.dist, sums, grad_norms, lr, timer.times,
                                         time.perf_counter() - step_start,
                                         with_sync=models.after_update is not None))
    return metrics


def _model_device(model: torch.nn.Module) -> torch.device:
    """The device of the model's first parameter (a DTensor reports its local device)."""
    return next(model.parameters()).device
