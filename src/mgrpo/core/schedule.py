"""The learning-rate schedule: linear warm-up, then cosine decay (or constant).

    f(s) = (s + 1) / w                                        s < w   (warm-up, w > 0)
    f(s) = r + (1 - r) * (1 + cos(pi * p)) / 2                 s >= w,  p = min((s - w) / max(T - w, 1), 1)

for scheduler step s (0-based), w warm-up steps, T total steps and floor ratio r: the
multiplier rises to 1 at s = w - 1, then falls from 1 at s = w to r at s = T and stays there.
Edge case: w >= T leaves no decay within the run (f = 1 at s = T). `constant=True` keeps 1 after the
warm-up. Shared by the training schedule
(`mgrpo.train.run.setup`) and the lab model's SFT (`mgrpo.lab.build`).
"""

from __future__ import annotations

import math


def warmup_cosine(step: int, warmup_steps: int, total_steps: int, min_ratio: float = 0.0, *,
                  constant: bool = False) -> float:
    """Multiplier of the base learning rate at 0-based step `step` (formula above)."""
    if warmup_steps > 0 and step < warmup_steps:
        return (step + 1) / warmup_steps
    if constant:
        return 1.0
    span = max(total_steps - warmup_steps, 1)
    progress = min(max(step - warmup_steps, 0) / span, 1.0)
    return min_ratio + (1 - min_ratio) * 0.5 * (1 + math.cos(math.pi * progress))
