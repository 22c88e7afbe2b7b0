"""Seed aggregation for `mgrpo compare`: per-arm tables (mean ± std) and mean-and-band curves.

An *arm* is one configuration run under several seeds (e.g. ``srt``, or ``m-grpo`` with
``algorithm.iqr_k=null``). For each arm :func:`summarize_arm` reports, over its seeds:

- best validation accuracy: the maximum over every validation point *including* the step-0
  row (the untrained policy), and the step of that maximum;
- final validation accuracy (the last validation point);
- collapse: see :func:`collapse_step`; the arm's collapse rate is collapsed seeds / seeds,
  and its collapse step the mean over the collapsed seeds;
- end-of-run entropy, reward and vote share: the mean of the last ``END_WINDOW`` logged
  steps of each run (one step is noisy), then mean ± std over seeds;
- the collapse alarm: how many seeds logged ``alarm/collapse`` = 1, and the first step;
- what the vote did (:func:`mechanism_table`): pseudo-label accuracy at the start and the
  end, the IQR filter's dropped fraction, and for runs with a momentum model how far the
  policy and the momentum model moved from the initial weights (:mod:`mgrpo.report.drift`).

Std is the sample standard deviation over seeds (n - 1 in the denominator); one seed shows
the mean alone.

Curves (:func:`plot_bands`): each run's series is EMA-smoothed (dense metrics only; the
validation points are used as logged), the seeds of an arm are aligned on the steps they all
logged, and the plot shows the mean with a band of ± 1 std across seeds.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from mgrpo.report import stats as S
from mgrpo.report.drift import run_drift
from mgrpo.report.html import MISSING, Table
from mgrpo.report.plots import _colors, _finish, _new_figure, ema_smooth
from mgrpo.report.runs import RunData, RunMetrics
from mgrpo.train.logs.alarm import replay

VAL_KEY = "val/accuracy"
REWARD_KEY = "reward/mean"
ENTROPY_KEY = "entropy/policy"
VOTE_KEY = "label/vote_share"
LABEL_KEY = "label/accuracy"
DROPPED_KEY = "filter/dropped_fraction"
ALARM_KEY = "alarm/collapse"
END_WINDOW = 10  # steps averaged for "at the end" and for the reward trend of a collapse
DEFAULT_COLLAPSE_DROP = 0.10
#: later validation points that must confirm a drop before it counts as a collapse
COLLAPSE_CONFIRM_POINTS = 2
BAND_SMOOTHING = 0.8
BAND_ALPHA = 0.2

#: (metric key, file stem, title, y label, sparse); the stem ``*_change`` plots each run's
#: values minus its first value (validation: minus the untrained policy's step-0 accuracy)
BAND_PLOTS: tuple[tuple[str, str, str, str, bool], ...] = (
    (VAL_KEY, "val_accuracy", "Validation accuracy (held-out, hidden labels)", "accuracy", True),
    (VAL_KEY, "val_accuracy_change", "Validation accuracy minus step 0", "accuracy change",
     True),
    (REWARD_KEY, "reward", "Training reward (agreement with the vote)", "mean reward", False),
    (ENTROPY_KEY, "entropy", "Policy token entropy", "nats / token", False),
    (VOTE_KEY, "vote_share", "Majority-vote share", "share", False),
    ("label/accuracy", "label_accuracy", "Pseudo-label accuracy (vs hidden labels)", "accuracy",
     False),
    ("response/length_mean", "response_length", "Response length", "tokens", False),
)


def collapse_step(log: RunMetrics, drop: float = DEFAULT_COLLAPSE_DROP,
                  confirm: int = COLLAPSE_CONFIRM_POINTS) -> int | None:
    """First validation step at which the run has collapsed, or None.

    Collapsed at validation step ``t > 0`` when all four hold:

    1. ``val(t) <= best(t) - drop``, where ``best(t)`` is the highest validation accuracy at
       or before ``t`` (the step-0 point included);
    2. it stays there: every later validation point is also ``<= best(t) - drop``;
    3. at least ``confirm`` validation points come after ``t`` (default 2): a drop on one of
       the last ``confirm`` points has nothing to show it persists, and is not counted (a
       run that ends in such a drop must be extended to decide; ``confirm=0`` is the rule
       without this condition);
    4. the training reward went up: with ``n`` the number of reward values logged at steps
       ``<= t`` and ``w = min(END_WINDOW, n // 2)``, the mean of the last ``w`` of them
       exceeds the mean of the first ``w`` (two windows that never overlap; at ``t`` = 6,
       steps 4-6 against steps 1-3).

    ``drop`` is absolute (0.10 = 10 accuracy points). A run with fewer than two validation
    points, or fewer than two reward values up to ``t``, never collapses at ``t``.
    """
    v_steps, v_vals = log.series(VAL_KEY)
    r_steps, r_vals = log.series(REWARD_KEY)
    if v_vals.size < 2:
        return None
    best = -math.inf
    for i, (step, val) in enumerate(zip(v_steps, v_vals, strict=True)):
        best = max(best, float(val))
        if step <= 0 or val > best - drop or v_vals.size - 1 - i < confirm:
            continue
        if any(later > best - drop for later in v_vals[i + 1 :]):
            continue
        upto = r_vals[r_steps <= step]
        if upto.size < 2:
            continue
        window = min(END_WINDOW, upto.size // 2)
        if float(upto[-window:].mean()) > float(upto[:window].mean()):
            return int(step)
    return None


def _end_mean(log: RunMetrics, key: str, *, start: bool = False) -> float | None:
    """Mean of the last (``start``: the first) ``END_WINDOW`` logged values of ``key``."""
    _, values = log.series(key)
    if values.size == 0:
        return None
    return float((values[:END_WINDOW] if start else values[-END_WINDOW:]).mean())


@dataclass
class Stat:
    """Mean and sample std over seeds (std None with fewer than two values)."""

    values: list[float] = field(default_factory=list)

    @property
    def mean(self) -> float | None:
        return statistics.fmean(self.values) if self.values else None

    @property
    def std(self) -> float | None:
        return statistics.stdev(self.values) if len(self.values) > 1 else None

    def fmt(self, scale: float = 1.0, digits: int = 1) -> str:
        if not self.values:
            return MISSING
        text = f"{scale * self.mean:.{digits}f}"
        return text if self.std is None else f"{text} ± {scale * self.std:.{digits}f}"


@dataclass
class ArmSummary:
    """One arm over its seeds (accuracies and rewards in [0, 1])."""

    arm: str
    seeds: list[int | None]
    steps: list[int]
    best_val: Stat
    best_val_step: Stat
    start_val: Stat
    final_val: Stat
    end_entropy: Stat
    end_reward: Stat
    end_vote_share: Stat
    collapse_steps: list[int | None]
    alarm_steps: list[int | None]
    change: Stat = field(default_factory=Stat)  # final - step-0 validation accuracy, per run
    final_by_seed: dict[int, float] = field(default_factory=dict)
    start_reward: Stat = field(default_factory=Stat)
    start_entropy: Stat = field(default_factory=Stat)
    start_label_acc: Stat = field(default_factory=Stat)
    end_label_acc: Stat = field(default_factory=Stat)
    dropped: Stat = field(default_factory=Stat)
    policy_drift: Stat = field(default_factory=Stat)
    momentum_drift: Stat = field(default_factory=Stat)
    drift_ratio: Stat = field(default_factory=Stat)

    @property
    def collapsed(self) -> int:
        return sum(s is not None for s in self.collapse_steps)

    @property
    def alarmed(self) -> int:
        return sum(s is not None for s in self.alarm_steps)

    def as_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"arm": self.arm, "seeds": self.seeds, "steps": self.steps}
        for name in ("best_val", "best_val_step", "start_val", "final_val", "end_entropy",
                     "end_reward", "end_vote_share", "change", "start_reward", "start_entropy",
                     "start_label_acc", "end_label_acc",
                     "dropped", "policy_drift", "momentum_drift", "drift_ratio"):
            stat: Stat = getattr(self, name)
            out[name] = {"mean": stat.mean, "std": stat.std, "values": stat.values}
        out["collapse_steps"] = self.collapse_steps
        out["collapsed"] = self.collapsed
        out["alarm_first_steps"] = self.alarm_steps
        return out


def summarize_arm(
    arm: str,
    runs: Sequence[RunData],
    *,
    drop: float = DEFAULT_COLLAPSE_DROP,
    confirm: int = COLLAPSE_CONFIRM_POINTS,
    with_drift: bool = True,
    replay_alarm: bool = False,
) -> ArmSummary:
    """Aggregate the runs of one arm (one run per seed); ``with_drift`` reads checkpoints.

    The alarm's first step is the logged ``alarm/collapse``; with ``replay_alarm`` a fresh
    :class:`mgrpo.train.logs.alarm.CollapseAlarm` with the default thresholds is replayed over
    each log instead (to score runs logged under other thresholds)."""
    s = ArmSummary(arm, [], [], Stat(), Stat(), Stat(), Stat(), Stat(), Stat(), Stat(), [], [])
    for run in runs:
        log = run.metrics
        seed = run.flat_config.get("seed")
        s.seeds.append(seed if isinstance(seed, int) else None)
        s.steps.append(int(log.last_step or 0))
        v_steps, v_vals = log.series(VAL_KEY)
        if v_vals.size:
            i = int(v_vals.argmax())
            s.best_val.values.append(float(v_vals[i]))
            s.best_val_step.values.append(float(v_steps[i]))
            s.final_val.values.append(float(v_vals[-1]))
            if isinstance(seed, int):
                s.final_by_seed[seed] = float(v_vals[-1])
            if v_steps[0] == 0:
                s.start_val.values.append(float(v_vals[0]))
                s.change.values.append(float(v_vals[-1] - v_vals[0]))
        for stat, key in ((s.end_entropy, ENTROPY_KEY), (s.end_reward, REWARD_KEY),
                          (s.end_vote_share, VOTE_KEY)):
            value = _end_mean(log, key)
            if value is not None:
                stat.values.append(value)
        s.collapse_steps.append(collapse_step(log, drop, confirm))
        if replay_alarm:
            states = replay(log.records)
            s.alarm_steps.append(states[0].step if states else None)
        else:
            fired = [r["step"] for r in log.records if r.get(ALARM_KEY) in (1, True)]
            s.alarm_steps.append(int(fired[0]) if fired else None)
        for stat, key, start in ((s.start_label_acc, LABEL_KEY, True),
                                 (s.end_label_acc, LABEL_KEY, False),
                                 (s.start_reward, REWARD_KEY, True),
                                 (s.start_entropy, ENTROPY_KEY, True)):
            value = _end_mean(log, key, start=start)
            if value is not None:
                stat.values.append(value)
        _, dropped = log.series(DROPPED_KEY)
        if dropped.size:
            s.dropped.values.append(float(dropped.mean()))
        drift = run_drift(run.path, run.flat_config) if with_drift else None
        if drift is not None:
            s.policy_drift.values.append(drift["policy_drift"])
            s.momentum_drift.values.append(drift["momentum_drift"])
            s.drift_ratio.values.append(drift["ratio"])
    return s


def mechanism_table(arms: Sequence[ArmSummary]) -> Table:
    """What the vote did, first ``END_WINDOW`` steps -> last ``END_WINDOW`` steps (mean over
    seeds): training reward, policy entropy, pseudo-label accuracy (majority-vote label vs the
    hidden answer); the mean fraction of rollouts the IQR filter dropped; and for arms with a
    momentum model the L2 distance of policy and momentum model from the initial weights at
    the final checkpoint and their ratio (mean ± std over seeds)."""
    headers = ["arm", "reward", "entropy", "pseudo-label acc (%)", "IQR-dropped fraction",
               "||policy - init||", "||momentum - init||", "momentum / policy"]

    def arrow(a: Stat, b: Stat, scale: float, digits: int) -> str:
        if a.mean is None or b.mean is None:
            return MISSING
        return f"{scale * a.mean:.{digits}f} -> {scale * b.mean:.{digits}f}"

    rows = [
        [a.arm, arrow(a.start_reward, a.end_reward, 1.0, 2),
         arrow(a.start_entropy, a.end_entropy, 1.0, 3),
         arrow(a.start_label_acc, a.end_label_acc, 100.0, 1),
         a.dropped.fmt(1.0, 3), a.policy_drift.fmt(1.0, 3), a.momentum_drift.fmt(1.0, 3),
         a.drift_ratio.fmt(1.0, 2)]
        for a in arms
    ]
    return Table(headers, rows)


def paired_table(arms: Sequence[ArmSummary]) -> Table | None:
    """Each arm against the first arm, seed by seed (the seeds share the untrained policy's
    sampling and data order, so the pairing removes the spread of the starting points).

    Columns: mean ± std of the final-accuracy differences in points; their mean with a 95%
    Student-t and a 95% percentile-bootstrap interval (:mod:`mgrpo.report.stats`); the
    paired t-test p-value and its Holm adjustment over the arms of this table; on how many
    seeds the arm ended higher; collapsed seeds of the arm and the first arm with the
    two-sided Fisher exact p-value (Holm over the arms). None with fewer than two arms.
    """
    if len(arms) < 2:
        return None
    ref = arms[0]
    headers = ["arm", f"final val acc minus {ref.arm}'s, same seed (points)", "mean [95% t]",
               "bootstrap 95%", "p (paired t)", "p (Holm)", f"seeds above {ref.arm}",
               f"collapsed vs {ref.arm}", "p (Fisher, Holm)"]
    diffs, t_p, fisher_p = [], [], []
    for a in arms[1:]:
        common = sorted(set(a.final_by_seed) & set(ref.final_by_seed))
        diffs.append([100.0 * (a.final_by_seed[k] - ref.final_by_seed[k]) for k in common])
        t_p.append(S.t_pvalue(diffs[-1]))
        fisher_p.append(S.fisher_exact_pvalue(a.collapsed, len(a.collapse_steps),
                                              ref.collapsed, len(ref.collapse_steps)))
    rows = []
    for a, diff, p, p_adj, f_adj in zip(arms[1:], diffs, t_p, S.holm(t_p), S.holm(fisher_p),
                                        strict=True):
        above = sum(d > 0 for d in diff)
        rows.append([a.arm, Stat(diff).fmt(), S.t_interval(diff).fmt(),
                     S.bootstrap_interval(diff).bounds(), S.fmt_p(p), S.fmt_p(p_adj),
                     f"{above}/{len(diff)}",
                     f"{a.collapsed}/{len(a.collapse_steps)} vs "
                     f"{ref.collapsed}/{len(ref.collapse_steps)}", S.fmt_p(f_adj)])
    return Table(headers, rows)


def _steps_cell(steps: list[int | None]) -> str:
    return Stat([float(x) for x in steps if x is not None]).fmt(digits=0)


def arm_table(arms: Sequence[ArmSummary]) -> Table:
    """Rows arms; accuracies in %, mean ± std over seeds."""
    headers = [
        "arm", "seeds", "val acc step 0 (%)", "best val acc (%)", "final val acc (%)",
        "final - step 0 (points)", "collapsed", "collapse step",
        f"entropy, last {END_WINDOW} steps", f"reward, last {END_WINDOW} steps",
        f"vote share, last {END_WINDOW} steps", "alarm fired (online warning)",
    ]
    rows = []
    for a in arms:
        n = len(a.seeds)
        rows.append([
            a.arm,
            str(n),
            a.start_val.fmt(100.0),
            a.best_val.fmt(100.0),
            a.final_val.fmt(100.0),
            a.change.fmt(100.0),
            f"{a.collapsed}/{n}",
            _steps_cell(a.collapse_steps),
            a.end_entropy.fmt(1.0, 4),
            a.end_reward.fmt(1.0, 3),
            a.end_vote_share.fmt(1.0, 3),
            f"{a.alarmed}/{n}" + (f" (from {_steps_cell(a.alarm_steps)})" if a.alarmed else ""),
        ])
    return Table(headers, rows)


def seed_table(arms: Sequence[ArmSummary]) -> Table:
    """One row per run: the numbers behind :func:`arm_table`."""
    headers = ["arm", "seed", "steps", "best val acc (%)", "final val acc (%)", "collapse step",
               "alarm step"]
    rows = []
    for a in arms:
        finals = a.final_val.values
        bests = a.best_val.values
        for i, seed in enumerate(a.seeds):
            rows.append([
                a.arm,
                MISSING if seed is None else str(seed),
                str(a.steps[i]),
                f"{100 * bests[i]:.1f}" if i < len(bests) else MISSING,
                f"{100 * finals[i]:.1f}" if i < len(finals) else MISSING,
                MISSING if a.collapse_steps[i] is None else str(a.collapse_steps[i]),
                MISSING if a.alarm_steps[i] is None else str(a.alarm_steps[i]),
            ])
    return Table(headers, rows)


def summary_json(arms: Sequence[ArmSummary], drop: float) -> dict[str, Any]:
    return {
        "collapse_criterion": {
            "drop": drop,
            "rule": "val(t) <= best-so-far (incl. step 0) - drop at t and at every later "
            f"validation point, with the mean reward of the {END_WINDOW} steps up to t above "
            f"that of the first {END_WINDOW} steps",
        },
        "end_window_steps": END_WINDOW,
        "arms": [a.as_dict() for a in arms],
    }


def band_series(
    runs: Sequence[RunData],
    key: str,
    *,
    sparse: bool,
    smoothing: float = BAND_SMOOTHING,
    relative: bool = False,
) -> tuple[np.ndarray, np.ndarray, np.ndarray] | None:
    """(steps, mean, std) over runs on the steps every run logged; None when none has it.

    Dense series are EMA-smoothed per run first (debiased, weight ``smoothing``);
    ``relative`` subtracts each run's first value (so seeds that start apart align at 0).
    """
    per_run: list[dict[int, float]] = []
    for run in runs:
        steps, values = run.metrics.series(key)
        if steps.size == 0:
            continue
        if not sparse:
            values = ema_smooth(values, smoothing)
        if relative:
            values = values - values[0]
        per_run.append({int(s): float(v) for s, v in zip(steps, values, strict=True)})
    if not per_run:
        return None
    common = sorted(set.intersection(*(set(d) for d in per_run)))
    if not common:
        return None
    grid = np.array([[d[s] for s in common] for d in per_run])  # (runs, steps)
    std = grid.std(axis=0, ddof=1) if grid.shape[0] > 1 else np.zeros(grid.shape[1])
    return np.asarray(common, dtype=np.float64), grid.mean(axis=0), std


def band_caption(groups: dict[str, Sequence[RunData]], sparse: bool) -> str:
    """What a band plot draws: mean ± std over seeds only where an arm has several runs."""
    sizes = {len(runs) for runs in groups.values()}
    what = ("mean ± std over seeds" if min(sizes) > 1
            else "one run per arm" if max(sizes) == 1
            else "mean ± std over seeds (n = 1: the run itself)")
    return what + ("" if sparse else f", EMA-smoothed (weight {BAND_SMOOTHING:g})")


def plot_bands(
    groups: dict[str, Sequence[RunData]], out_dir: Path, *, title_suffix: str = ""
) -> list[Path]:
    """One PNG per metric in :data:`BAND_PLOTS`: per arm, mean over seeds ± 1 std band."""
    out_dir.mkdir(parents=True, exist_ok=True)
    colors = _colors(len(groups))
    written = []
    for key, stem, title, ylabel, sparse in BAND_PLOTS:
        fig, (ax,) = _new_figure()
        drawn = False
        for (arm, runs), color in zip(groups.items(), colors, strict=True):
            band = band_series(runs, key, sparse=sparse, relative=stem.endswith("_change"))
            if band is None:
                continue
            steps, mean, std = band
            label = f"{arm} (n={len(runs)})"
            ax.plot(steps, mean, color=color, lw=1.6, label=label,
                    marker="o" if sparse else None, markersize=3)
            ax.fill_between(steps, mean - std, mean + std, color=color, alpha=BAND_ALPHA, lw=0)
            drawn = True
        if not drawn:
            continue
        ax.set_xlabel("step")
        ax.set_ylabel(ylabel)
        ax.legend(fontsize=7, loc="best", framealpha=0.7)
        suffix = f" {title_suffix}" if title_suffix else ""
        written.append(_finish(fig, [ax], out_dir / f"{stem}.png",
                               f"{title}: {band_caption(groups, sparse)}{suffix}"))
    return written
