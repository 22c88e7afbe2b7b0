"""DAPO dynamic sampling by resampling (`algorithm.dynamic_sampling: resample`).

A prompt whose train rollouts in the loss set all get the same reward (`core.shaping.
informative_groups` is False: a *constant* group) has zero advantage and teaches nothing. With
`filter` such prompts only leave the loss. With `resample` the step first generates their groups
again (all G = M + V + N rollouts: the policy's and the momentum model's, so the vote sees a
fresh pool), re-scores and re-rewards the step, and repeats while constant groups remain and the
budget lasts:

    constant = prompts whose shaped group is constant            (all ranks, global order)
    while constant and used < budget:
        chosen = the first (budget - used) of them, in global prompt order
        regenerate each chosen prompt's group (attempt a = 1, 2, ...: its own seed streams)
        score, vote, reward and shape the whole step again on the spliced pool
    prompts still constant are filtered, as with `filter`

The budget (`algorithm.resample_budget`, null = the step's prompt count) counts groups
generated again, over all processes; every rank takes the same decisions from the gathered
flags, so W processes regenerate exactly the groups one process would. Sampling seeds of
attempt a: `seeds.resample_stream(stream, a)` with the global prompt index as usual
(`train_step` builds them), so a resampled group is a function of (seed, step, attempt, prompt
set) like any other.

Logged (`ResampleStats.as_metrics`): `dynamic/constant_before` (constant prompts of the step
before any regeneration), `dynamic/resampled_groups` (groups generated again) and
`dynamic/constant_after` (constant prompts left, then filtered); counts over all processes.
`dynamic/filtered_fraction` (the filtered share) is logged as with `filter`.

Departure from DAPO: DAPO (verl `recipe/dapo`) keeps sampling *new* prompts until the batch
holds `train_batch_size` informative ones (at most `max_num_gen_batches` generation rounds);
here the step's own prompts are sampled again, so the step's prompt set (a function of (seed,
step), for exact resume) does not change and a prompt the policy always solves (or never does)
stays constant and is filtered once the budget is spent.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass

import torch

from mgrpo.methods.inputs import RewardInputs, Rollouts
from mgrpo.parallel.distributed import DistContext, gather_objects
from mgrpo.rollout import RolloutBatch
from mgrpo.train.step_shaping import Shaped

__all__ = ["ResampleStats", "ScoredPool", "resample_constant_groups", "splice_groups"]


@dataclass
class ScoredPool:
    """The step's rollouts with their scores and shaped rewards (B prompts, on D)."""

    policy: RolloutBatch  # (B*(M+V), T) policy rollouts, prompt-major
    momentum: RolloutBatch | None  # (B*N, T) momentum rollouts; None when N == 0
    rollouts: Rollouts  # entropies, keep mask, answers, votes of the whole pool
    train: RolloutBatch  # (B*M, T) the policy train rollouts
    shaped: Shaped  # rewards (B, M), loss set (B, M), per-prompt shaping stats
    inputs: RewardInputs  # what the rewards read (an advantage transform reads it too)

    def constant_prompts(self) -> list[int]:
        """Local indices of the prompts whose group the shaping found constant (filtered)."""
        filtered = self.shaped.stats.dynamic_filtered
        if filtered is None:
            raise ValueError("resampling needs the dynamic-sampling flags of the shaping "
                             "(dynamic_sampling must be filter or resample)")
        return [b for b, f in enumerate(filtered) if f]


@dataclass(frozen=True)
class ResampleStats:
    """What the resampling of one step did (counts over all processes)."""

    constant_before: int  # prompts whose group was constant before any regeneration
    resampled_groups: int  # groups generated again
    constant_after: int  # prompts still constant at the end (filtered)

    def as_metrics(self) -> dict[str, float]:
        return {"dynamic/constant_before": float(self.constant_before),
                "dynamic/resampled_groups": float(self.resampled_groups),
                "dynamic/constant_after": float(self.constant_after)}


def splice_groups(old: RolloutBatch, new: RolloutBatch, prompts: list[int], B: int, per: int,
                  pad_token_id: int = 0) -> RolloutBatch:
    """`old` (B * per rows, prompt-major) with the `per` rows of prompt `prompts[i]` replaced by
    block i of `new` (len(prompts) * per rows, prompt-major); the other prompts' rows unchanged,
    in place. Prompt indices are 0..B-1 as in `old`; widths padded to the widest block."""
    if old.num_rollouts != B * per or new.num_rollouts != len(prompts) * per:
        raise ValueError(f"splice_groups: expected {B} x {per} old rows and {len(prompts)} x "
                         f"{per} new ones, got {old.num_rollouts} and {new.num_rollouts}")
    source = {b: i for i, b in enumerate(prompts)}
    device = old.response_ids.device
    parts = []
    for b in range(B):
        batch, block = (new, source[b]) if b in source else (old, b)
        part = batch.select(torch.arange(block * per, (block + 1) * per, device=device))
        parts.append(dataclasses.replace(part, prompt_index=torch.zeros_like(part.prompt_index)))
    return RolloutBatch.cat(parts, [1] * B, pad_token_id)


def resample_constant_groups(
    pool: ScoredPool,
    *,
    budget: int,
    prompt_offset: int,
    regenerate: Callable[[list[int], int], tuple[RolloutBatch, RolloutBatch | None]],
    rescore: Callable[[RolloutBatch, RolloutBatch | None], ScoredPool],
    groups: tuple[int, int],
    pad_token_id: int = 0,
    ctx: DistContext | None = None,
) -> tuple[ScoredPool, ResampleStats]:
    """Generate constant groups again until none is left or `budget` groups were generated
    (module docstring); the final pool and what was done.

    `regenerate(prompts, attempt)`: this rank's local prompt indices -> their new (policy,
    momentum) groups, prompt-major, attempt 1, 2, ...; `rescore(policy, momentum)`: the scored,
    rewarded and shaped pool of the whole (spliced) step; `groups`: (M + V, N) rows per prompt
    of the policy and momentum batches; `prompt_offset`: the global index of local prompt 0.
    Every rank must call it (one gather per round)."""
    B = len(pool.rollouts.answers)
    per_policy, per_momentum = groups
    constant = pool.constant_prompts()
    used, attempt, before = 0, 0, None
    while True:
        gathered = _gather(ctx, [prompt_offset + b for b in constant])  # global order
        before = len(gathered) if before is None else before
        chosen = gathered[: max(budget - used, 0)]
        if not chosen:
            return pool, ResampleStats(before, used, len(gathered))
        used, attempt = used + len(chosen), attempt + 1
        mine = [g - prompt_offset for g in chosen if prompt_offset <= g < prompt_offset + B]
        if not mine:  # other ranks regenerate this round; this rank's pool is unchanged
            continue
        policy, momentum = regenerate(mine, attempt)
        spliced_policy = splice_groups(pool.policy, policy, mine, B, per_policy, pad_token_id)
        spliced_momentum = (None if pool.momentum is None else
                            splice_groups(pool.momentum, momentum, mine, B, per_momentum,
                                          pad_token_id))
        pool = rescore(spliced_policy, spliced_momentum)
        constant = pool.constant_prompts()


def _gather(ctx: DistContext | None, local: list[int]) -> list[int]:
    """Every rank's global indices, concatenated in rank order (= global prompt order)."""
    if ctx is None:
        return list(local)
    return [g for part in gather_objects(ctx, local, stage="dynamic sampling") for g in part]
