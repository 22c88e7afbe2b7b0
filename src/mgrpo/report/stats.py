"""Statistics for comparing arms over seeds: intervals, paired tests, multiplicity, counts.

Used by `mgrpo compare`'s paired table (:func:`mgrpo.report.arms.paired_table`) and by the
lab study's scripts (``docs/lab-study/stats.py``). All functions take plain sequences of
floats (one value per seed) and return floats; ``nan`` marks "not defined for this input"
(fewer than two values, no spread), never an exception.

- :func:`t_interval`: mean and two-sided Student-t interval, ``mean ± t_{1-a/2, n-1} s/sqrt(n)``
  with ``s`` the sample SD (n - 1).
- :func:`bootstrap_interval`: percentile bootstrap of the mean (resample the n values with
  replacement ``resamples`` times, seeded; the ``a/2`` and ``1 - a/2`` percentiles).
- :func:`t_pvalue`: two-sided one-sample t-test of mean 0 (for paired differences: the paired
  t-test).
- :func:`holm`: Holm-Bonferroni step-down adjusted p-values, ``p_(i) -> max_{j<=i} min(1,
  (m - j + 1) p_(j))`` over the sorted p-values; controls the family-wise error rate.
- :func:`fisher_exact_pvalue`: two-sided Fisher exact test of a 2 x 2 table of counts (e.g.
  collapsed / not collapsed for two arms).
- :func:`expected_max_normal`: ``E[max of n independent N(0, 1)]``, the amount by which "best
  of n noisy evaluations" overstates a flat curve, in units of the evaluation noise.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from scipy import stats as _stats

NAN = float("nan")


@dataclass(frozen=True)
class Interval:
    """A point estimate with a two-sided interval (``low``/``high`` nan when undefined)."""

    mean: float
    low: float
    high: float

    def fmt(self, digits: int = 1, signed: bool = True) -> str:
        """``+1.2 [-0.3, +2.7]``; ``+1.2`` alone when the interval is undefined; ``—`` for no data."""
        if math.isnan(self.mean):
            return "—"
        spec = f"{'+' if signed else ''}.{digits}f"
        if math.isnan(self.low):
            return format(self.mean, spec)
        return f"{self.mean:{spec}} {self.bounds(digits, signed)}"

    def bounds(self, digits: int = 1, signed: bool = True) -> str:
        """``[-0.3, +2.7]`` alone; ``—`` when the interval is undefined."""
        if math.isnan(self.low):
            return "—"
        spec = f"{'+' if signed else ''}.{digits}f"
        return f"[{self.low:{spec}}, {self.high:{spec}}]"


def _array(values: Sequence[float]) -> np.ndarray:
    return np.asarray(list(values), dtype=float)


def _too_few(a: np.ndarray) -> Interval | None:
    """The answer for n < 2 (n = 0: all nan; n = 1: the mean alone), None from n = 2."""
    if a.size == 0:
        return Interval(NAN, NAN, NAN)
    return Interval(float(a.mean()), NAN, NAN) if a.size < 2 else None


def t_interval(values: Sequence[float], level: float = 0.95) -> Interval:
    """Mean with its Student-t interval at ``level`` (n < 2: mean alone; n = 0: all nan)."""
    a = _array(values)
    if (few := _too_few(a)) is not None:
        return few
    mean = float(a.mean())
    half = float(_stats.t.ppf(0.5 + level / 2, a.size - 1) * a.std(ddof=1) / math.sqrt(a.size))
    return Interval(mean, mean - half, mean + half)


def bootstrap_interval(values: Sequence[float], level: float = 0.95, resamples: int = 10_000,
                       seed: int = 0) -> Interval:
    """Mean with its percentile-bootstrap interval (n < 2: mean alone; deterministic in seed)."""
    a = _array(values)
    if (few := _too_few(a)) is not None:
        return few
    mean = float(a.mean())
    rng = np.random.default_rng(seed)
    means = a[rng.integers(0, a.size, size=(resamples, a.size))].mean(axis=1)
    low, high = np.percentile(means, [50 * (1 - level), 50 * (1 + level)])
    return Interval(mean, float(low), float(high))


def t_pvalue(values: Sequence[float]) -> float:
    """Two-sided one-sample t-test of mean 0; nan for n < 2 or zero spread."""
    a = _array(values)
    if a.size < 2 or float(a.std(ddof=1)) == 0.0:
        return NAN
    return float(_stats.ttest_1samp(a, 0.0).pvalue)


def holm(pvalues: Sequence[float]) -> list[float]:
    """Holm-adjusted p-values in the input order; nan entries stay nan and are not counted
    in the family size m."""
    p = list(pvalues)
    index = sorted((i for i, x in enumerate(p) if not math.isnan(x)), key=lambda i: p[i])
    adjusted = [NAN] * len(p)
    running = 0.0
    for rank, i in enumerate(index):
        running = max(running, min(1.0, (len(index) - rank) * p[i]))
        adjusted[i] = running
    return adjusted


def fisher_exact_pvalue(hits_a: int, n_a: int, hits_b: int, n_b: int) -> float:
    """Two-sided Fisher exact p of ``[[hits_a, n_a - hits_a], [hits_b, n_b - hits_b]]``."""
    for name, hits, n in (("a", hits_a, n_a), ("b", hits_b, n_b)):
        if not 0 <= hits <= n:
            raise ValueError(f"fisher_exact_pvalue: arm {name} has {hits} hits out of {n}")
    if n_a == 0 or n_b == 0:
        return NAN
    table = [[hits_a, n_a - hits_a], [hits_b, n_b - hits_b]]
    return float(_stats.fisher_exact(table, alternative="two-sided").pvalue)


def expected_max_normal(n: int) -> float:
    """``E[max of n iid N(0, 1)] = integral x n phi(x) Phi(x)^(n-1) dx`` (0 for n = 1)."""
    if n < 1:
        raise ValueError(f"expected_max_normal: n must be >= 1, got {n}")
    x = np.linspace(-10.0, 10.0, 40_001)
    density = n * _stats.norm.pdf(x) * _stats.norm.cdf(x) ** (n - 1)
    return float(np.sum(x * density) * (x[1] - x[0]))


def fmt_p(p: float) -> str:
    """``0.012``, ``< 0.001``, or ``—`` for nan."""
    if math.isnan(p):
        return "—"
    return "< 0.001" if p < 0.001 else f"{p:.3f}"
