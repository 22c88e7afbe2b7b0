"""URLVR's "Model Collapse Step" read from a run's metrics (He et al. 2026, "How Far Can
Unsupervised RLVR Scale LLM Training?", arXiv 2603.08660; code: PRIME-RL/TTRL, branch
urlvr-dev).

The paper trains with an intrinsic (label-free) reward and calls the model collapsed at the
first step where the *reward accuracy* falls below 1%:

    MCS = min { t : RA(t) < 1% }

where RA (TTRL's ``reward_accuracy``, ``verl/utils/reward_score/ttrl/ttt_metrics.py``) is the
share of rollouts whose pseudo-reward (0/1, agreement with the vote) equals the reward the
ground truth would give. A larger MCS is read as a stronger model prior, a model more
trainable by RL. The definition is second-hand: the branch and the paper's text were not in
the stored sources; two summaries of the paper agree on the formula above (RA < 1%, first
step, no smoothing).

What mgrpo logs, and the departure. RA needs, per rollout, both rewards together; a step's
metrics hold only their means: ``r = reward/hit_rate`` (the share of train rollouts with
reward > 0, the 0/1 pseudo-reward; runs logged before that key existed give ``reward/mean``,
the same number for a 0/1 reward) and ``a = policy/accuracy`` (the share whose answer is
right; labelled training prompts only). With ``P11`` the share both rewarded and right,

    RA = 1 - r - a + 2 P11,     max(0, r + a - 1) <= P11 <= min(r, a)

so the metrics bound RA but do not give it. This module reads the upper bound

    RA+ = 1 - |r - a|

which is RA exactly when every right answer sits in a group whose label is right (under the
vote reward the rewarded rollouts of such a group are exactly its right ones, so then
``P11 = a <= r`` and ``RA = 1 - (r - a)``). ``model_collapse_step`` is the first step with ``RA+ < threshold``: at that
step RA is certainly below the threshold, so the paper's MCS is that step or earlier. RA is
defined for a 0/1 reward (vote agreement, the truth); for a graded reward (self-certainty,
entropy) ``r`` is only the share of positive rewards and the reading is not the paper's.
Without ground truth (no ``policy/accuracy``) there is no MCS.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from mgrpo.report.runs import RunMetrics

__all__ = [
    "ACCURACY_KEY",
    "HIT_RATE_KEY",
    "MCS_THRESHOLD",
    "CollapseReading",
    "model_collapse_step",
    "reward_accuracy_bound",
    "reward_accuracy_bounds",
]

HIT_RATE_KEY = "reward/hit_rate"
REWARD_KEY = "reward/mean"  # the hit rate of a 0/1 reward, in runs that predate HIT_RATE_KEY
ACCURACY_KEY = "policy/accuracy"
#: the paper's threshold on the reward accuracy
MCS_THRESHOLD = 0.01


def reward_accuracy_bounds(log: RunMetrics) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(steps, RA-, RA+)`` at every step that logged both means (module docstring;
    ``reward/mean`` for a run that never logged the hit rate): the bounds of RA over ``P11``,
    ``RA- = |1 - r - a|`` and ``RA+ = 1 - |r - a|``; empty arrays when either is never
    logged."""
    r_steps, r = log.series(HIT_RATE_KEY if log.has(HIT_RATE_KEY) else REWARD_KEY)
    a_steps, a = log.series(ACCURACY_KEY)
    steps, ri, ai = np.intersect1d(r_steps, a_steps, return_indices=True)
    r, a = r[ri], a[ai]
    return steps, np.abs(1.0 - r - a), 1.0 - np.abs(r - a)


def reward_accuracy_bound(log: RunMetrics) -> tuple[np.ndarray, np.ndarray]:
    """``(steps, RA+)``, the upper bound that the Model Collapse Step reads."""
    steps, _, upper = reward_accuracy_bounds(log)
    return steps, upper


@dataclass(frozen=True)
class CollapseReading:
    """A run's Model Collapse Step and what it was read from."""

    step: int | None  # first step with RA+ < threshold; None: not reached (or no data)
    threshold: float
    steps_read: int  # steps with both metrics (0: unlabelled, no MCS)
    lowest: float | None  # min RA+ over the run
    lowest_step: int | None  # its step

    def describe(self) -> str:
        """One cell of the report: the step, or why there is none."""
        if self.steps_read == 0:
            return "n/a (needs labelled training prompts: policy/accuracy)"
        if self.step is not None:
            return f"step {self.step} (RA+ < {self.threshold:g})"
        return (f"not reached in {self.steps_read} steps (lowest RA+ {self.lowest:.3f} at "
                f"step {self.lowest_step})")


def model_collapse_step(log: RunMetrics, threshold: float = MCS_THRESHOLD) -> CollapseReading:
    """The first step whose RA+ is below `threshold` (module docstring), with the run's lowest
    RA+ for the runs that never get there."""
    if not 0.0 < threshold <= 1.0:
        raise ValueError(f"the reward-accuracy threshold must be in (0, 1], got {threshold!r}")
    steps, bound = reward_accuracy_bound(log)
    if steps.size == 0:
        return CollapseReading(None, threshold, 0, None, None)
    below = np.flatnonzero(bound < threshold)
    low = int(np.argmin(bound))
    return CollapseReading(int(steps[below[0]]) if below.size else None, threshold,
                           int(steps.size), float(bound[low]), int(steps[low]))
