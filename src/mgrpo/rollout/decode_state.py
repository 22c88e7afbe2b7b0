"""Per-call helpers of the `fast` engine's decode loop: the row layout of a joint loop, the
compaction of finished rows, the additive key mask and the buffered (R, new) outputs."""

from __future__ import annotations

from collections.abc import Callable

import torch

from mgrpo.rollout.decoder import ModelPlan, Segment


def prefill_rows(counts: list[int], num_prompts: int) -> torch.Tensor:
    """(R,) index into the group-stacked prompt rows (G * P) of every rollout row: prompt p
    of group g -> n_g consecutive rows (rows are group-major, then prompt-major)."""
    idx = [
        g * num_prompts + p
        for g, n in enumerate(counts)
        for p in range(num_prompts)
        for _ in range(n)
    ]
    return torch.tensor(idx)


def compaction(
    segments: list[Segment],
    plans: list[ModelPlan],
    done: torch.Tensor,
    live: list[int],
    bucket: Callable[[int], int],
    ratio: float,
) -> tuple[torch.Tensor, list[Segment]] | None:
    """Which batch rows to keep when finished rows are compacted out, and the new segments.

    Each model's segment shrinks to `bucket(live rows)` rows (its live rows first, then
    finished ones as bucket padding; never more than it has) and segments stay model-major.
    None when the kept rows would be more than `ratio` x the batch (`done` (B,)): not worth
    the copy."""
    current = [0] * len(plans)
    for seg in segments:
        current[plans.index(seg.plan)] = seg.stop - seg.start
    sizes = [min(bucket(a), cur) if a else 0 for a, cur in zip(live, current, strict=True)]
    if sum(sizes) > ratio * done.shape[0]:
        return None
    keep = torch.cat(
        [  # per group: its active rows first, then bucket padding
            torch.argsort(done[s.start : s.stop].to(torch.int8), stable=True)[: sizes[g]]
            + s.start
            for s in segments
            for g in [plans.index(s.plan)]
        ]
    )
    bounds = [0]
    for size in sizes:
        bounds.append(bounds[-1] + size)
    kept = [Segment(plans[g], bounds[g], bounds[g + 1]) for g in range(len(sizes)) if sizes[g]]
    return keep, kept


def additive_mask(valid: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    """0 where `valid`, -inf elsewhere, in `dtype` (SDPA would convert a boolean mask again in
    every layer)."""
    return torch.zeros(valid.shape, dtype=dtype, device=valid.device).masked_fill_(
        ~valid, float("-inf")
    )


class DecodeOutputs:
    """The (R, new) result tensors, written every `check_every` steps: per-token results of
    the live rows are buffered and scattered once per quantity at `flush(rows)`, with the
    rows' original indices, instead of four scatters per token. Tokens of rows already
    finished at a step are written as padding with zero log-prob / entropy / mask."""

    def __init__(self, r: int, new: int, pad_token_id: int, device: torch.device) -> None:
        self.tok = torch.full((r, new), pad_token_id, dtype=torch.long, device=device)
        self.lp = torch.zeros((r, new), dtype=torch.float32, device=device)
        self.ent = torch.zeros((r, new), dtype=torch.float32, device=device)
        self.mask = torch.zeros((r, new), dtype=torch.bool, device=device)
        self.pad = pad_token_id
        self.written = 0  # columns already flushed
        self.pending: list[tuple[torch.Tensor, ...]] = []

    def add(self, tok, logp, ent, active) -> None:
        self.pending.append((tok, logp, ent, active))

    def flush(self, rows: torch.Tensor) -> None:
        if not self.pending:
            return
        tok, logp, ent, active = (torch.stack(x, dim=1) for x in zip(*self.pending))  # (B, k)
        cols = slice(self.written, self.written + active.shape[1])
        self.tok[rows, cols] = torch.where(active, tok, self.pad)
        self.lp[rows, cols] = logp * active
        self.ent[rows, cols] = ent * active
        self.mask[rows, cols] = active
        self.written = cols.stop
        self.pending = []
