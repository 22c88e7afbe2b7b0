"""Several groups of rollouts of the same prompts, each from its own engine, in one call.

    generate_groups(prompt_ids, [(engine, n, stream), ...], params, prompt_offset=, per_prompt=)
        -> [RolloutBatch per group]       (group g: n rollouts per prompt, prompt-major)

`params(stream, prompt)` gives the `SamplingParams` of one stream for the GLOBAL prompt index
`prompt` (a plain function; the seed is its only varying part). Two choices are made here,
so the training step does not make them:

- Joint or separate decode. When every engine is exactly a `FastEngine` (a wrapper such as
  LoRA's `ScopedEngine` swaps adapters around each call and keeps its own `generate`), the
  groups share ONE decode loop (`FastEngine.generate_joint`: the momentum model's rows ride
  in the policy's batch). The samples are then a deterministic function of the FIRST group's
  seed; separate calls would draw others (greedy decoding gives the same tokens).
- Seeding. `per_prompt=False`: one call over all prompts, seeded with prompt index
  `prompt_offset` (one process: 0). `per_prompt=True` (`distributed.seed_per_prompt`): one
  call per prompt b, seeded with `prompt_offset + b + 1`, so the samples do not depend on how
  prompts are split over ranks.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from mgrpo.rollout.base import RolloutEngine
from mgrpo.rollout.batch import RolloutBatch
from mgrpo.rollout.fast_engine import FastEngine
from mgrpo.rollout.params import SamplingParams

__all__ = ["generate_groups", "joint_decode"]

#: (engine, rollouts per prompt, seed stream) of one group
Group = tuple[RolloutEngine, int, int]


def joint_decode(engines: Sequence[RolloutEngine]) -> bool:
    """True when the engines can share one decode loop: more than one, each exactly a
    `FastEngine` (the exact type, so a wrapper keeps its own `generate`)."""
    return len(engines) > 1 and all(type(e) is FastEngine for e in engines)


def generate_groups(
    prompt_ids: list[list[int]],
    groups: Sequence[Group],
    params: Callable[[int, int], SamplingParams],
    *,
    prompt_offset: int = 0,
    per_prompt: bool = False,
) -> list[RolloutBatch]:
    """One `RolloutBatch` per group, in order (group g: (B * n_g, T) rollouts, prompt-major).

    Raises ValueError for no groups or a group with n < 1."""
    if not groups:
        raise ValueError("generate_groups: groups must name at least one (engine, n, stream)")
    for i, (_, n, _) in enumerate(groups):
        if n < 1:
            raise ValueError(f"generate_groups: groups[{i}] asks for n = {n} rollouts (>= 1)")
    ones = [1] * len(prompt_ids)  # per-prompt parts: one prompt each
    if joint_decode([engine for engine, _, _ in groups]):
        first = groups[0][0]
        assert isinstance(first, FastEngine)

        def joint(ids: list[list[int]], prompt: int) -> list[RolloutBatch]:
            return first.generate_joint(
                ids, [(engine, n, params(stream, prompt)) for engine, n, stream in groups])

        if not per_prompt:
            return joint(prompt_ids, prompt_offset)
        parts = [joint([ids], prompt_offset + b + 1) for b, ids in enumerate(prompt_ids)]
        return [RolloutBatch.cat([part[g] for part in parts], ones) for g in range(len(groups))]
    out = []
    for engine, n, stream in groups:  # group by group, as separate calls always ran
        if not per_prompt:
            out.append(engine.generate(prompt_ids, n=n, params=params(stream, prompt_offset)))
            continue
        out.append(RolloutBatch.cat(
            [engine.generate([ids], n=n, params=params(stream, prompt_offset + b + 1))
             for b, ids in enumerate(prompt_ids)], ones))
    return out
