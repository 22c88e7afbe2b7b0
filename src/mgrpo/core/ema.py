"""In-place exponential moving average of parameters: the M-GRPO momentum model (docs/design.md §3).

After every optimizer step ``theta_k <- m * theta_k + (1 - m) * theta_q`` (m = 0.99 in the
paper). The target should be kept in fp32: in bf16 an update of size ``(1 - m) * delta`` is
below half an ulp of most weights and the momentum model silently stops moving. A source of
another dtype (a bf16 policy) is cast to the target dtype before the update, a bounded chunk
of tensors at a time (`chunk_bytes`), so no full-model temporary exists: the extra memory is
at most ``max(chunk_bytes, largest cast tensor)``. An fp32 source (fp32 master weights) is
read as it is, with no cast and no temporary.

``cosine_momentum`` is the schedule of Co-rewarding-II's teacher (tmlr-group/Co-rewarding,
``ref.sliding_average``: ``ref <- alpha policy + (1 - alpha) ref``, i.e. ``m = 1 - alpha``):

    alpha(t) = alpha_end + 0.5 (alpha_start - alpha_end) (1 + cos(pi t / T)),
    t = clamp(step - 1, 0, T)

with T the run's total steps (their defaults in the released script: alpha_start = 0.01,
alpha_end = 1e-5, one update per step).

This is the pure update only; gathering sharded parameters (FSDP / ZeRO-3) belongs to the
caller around it.

Departure from the paper: none. ``m == 1`` returns without touching the target (exact no-op)
and ``m == 0`` is an exact copy, rather than relying on ``x * 1 + y * 0`` rounding.
"""

from __future__ import annotations

import math
from collections.abc import Iterable

import torch

from mgrpo.core._checks import check_number

__all__ = ["DEFAULT_CHUNK_BYTES", "cast_chunks", "cosine_momentum", "ema_update_"]

DEFAULT_CHUNK_BYTES = 256 << 20  # cast sources at most this many bytes at a time


def cosine_momentum(step: int, total_steps: int, alpha_start: float, alpha_end: float) -> float:
    """EMA momentum ``m = 1 - alpha(t)`` of the cosine schedule above (step is 1-based)."""
    a0 = check_number(alpha_start, "alpha_start", low=0.0, high=1.0)
    a1 = check_number(alpha_end, "alpha_end", low=0.0, high=1.0)
    if isinstance(total_steps, bool) or not isinstance(total_steps, int) or total_steps < 1:
        raise ValueError(f"total_steps must be an int >= 1, got {total_steps!r}")
    t = max(0, min(int(step) - 1, total_steps))
    alpha = a1 + 0.5 * (a0 - a1) * (1.0 + math.cos(math.pi * t / total_steps))
    return 1.0 - alpha


def cast_chunks(sizes: list[int], chunk_bytes: int) -> list[range]:
    """Consecutive index ranges over tensors of `sizes` bytes, each summing to at most
    `chunk_bytes` (a single larger tensor forms a chunk of its own). Empty `sizes` -> []."""
    if chunk_bytes < 1:
        raise ValueError(f"chunk_bytes must be >= 1, got {chunk_bytes!r}")
    chunks: list[range] = []
    start, total = 0, 0
    for i, size in enumerate(sizes):
        if i > start and total + size > chunk_bytes:
            chunks.append(range(start, i))
            start, total = i, 0
        total += size
    if sizes:
        chunks.append(range(start, len(sizes)))
    return chunks


@torch.no_grad()
def ema_update_(
    target: Iterable[torch.Tensor],
    source: Iterable[torch.Tensor],
    momentum: float,
    *,
    chunk_bytes: int = DEFAULT_CHUNK_BYTES,
) -> None:
    """``t <- momentum * t + (1 - momentum) * s`` for each pair, in place on ``target``.

    Uses ``torch._foreach_mul_`` / ``torch._foreach_add_`` on groups of tensors sharing device
    and dtype (one fused launch per group instead of one per parameter). Sources whose dtype or
    device differs from their target are cast first, `chunk_bytes` of casts at a time (fp32
    target + bf16 source is the intended M-GRPO setup); the result is bitwise the same as
    casting every source at once, since each element sees the same two operations. Runs under
    ``torch.no_grad`` so targets may be ``nn.Parameter``s.

    Args:
        target: tensors updated in place (floating dtype), e.g. ``momentum_model.parameters()``.
        source: tensors of the same shapes, same order, e.g. ``policy.parameters()``.
        momentum: ``m`` in ``[0, 1]``; 1 leaves the target unchanged, 0 copies the source.
        chunk_bytes: bound on the bytes of cast source tensors alive at once.

    Raises:
        ValueError: ``momentum`` outside ``[0, 1]`` (or not finite), different numbers of
            tensors, a shape mismatch at some index, or a non-floating target.
    """
    m = check_number(momentum, "momentum", low=0.0, high=1.0)
    targets = list(target)
    sources = list(source)
    if len(targets) != len(sources):
        raise ValueError(
            f"target and source must hold the same number of tensors, "
            f"got {len(targets)} and {len(sources)}"
        )
    for i, (t, s) in enumerate(zip(targets, sources, strict=True)):
        if not isinstance(t, torch.Tensor) or not isinstance(s, torch.Tensor):
            raise ValueError(f"target[{i}] and source[{i}] must be tensors")
        if t.shape != s.shape:
            raise ValueError(
                f"shape mismatch at index {i}: target {tuple(t.shape)} vs source {tuple(s.shape)}"
            )
        if not t.is_floating_point():
            raise ValueError(f"target[{i}] must be a floating tensor, got dtype {t.dtype}")
    if m == 1.0 or not targets:
        return
    # group by (device, dtype) of the target and whether the source needs a cast
    groups: dict[tuple[torch.device, torch.dtype, bool], tuple[list, list]] = {}
    for t, s in zip(targets, sources, strict=True):
        cast = s.dtype != t.dtype or s.device != t.device
        ts, ss = groups.setdefault((t.device, t.dtype, cast), ([], []))
        ts.append(t)
        ss.append(s)
    for (device, dtype, cast), (ts, ss) in groups.items():
        if m == 0.0:  # copy_ casts element-wise itself
            torch._foreach_copy_(ts, ss)
            continue
        spans = [range(len(ts))]
        if cast:
            spans = cast_chunks([t.numel() * t.element_size() for t in ts], chunk_bytes)
        for span in spans:
            part = [ss[i] for i in span]
            if cast:
                part = [x.to(device=device, dtype=dtype) for x in part]
            chunk = [ts[i] for i in span]
            torch._foreach_mul_(chunk, m)
            torch._foreach_add_(chunk, part, alpha=1.0 - m)
