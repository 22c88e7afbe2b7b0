"""Does URLVR's Model Collapse Step predict final accuracy across the lab study's runs?

    python docs/lab-study/model-collapse-step.py [RESULTS_DIR] --machine TEXT --date DATE \
        > docs/lab-study/model-collapse-step.md

Every run directory under RESULTS_DIR (default ``results/lab-study``; ``metrics.jsonl`` or its
``.xz`` form, read by :func:`mgrpo.report.runs.load_run`) is read once. A *sweep* is the
directory that holds the runs (one world, one step budget: ``long-regime``, ``mechanism``,
...); an *arm* is a run's name without its ``-sN`` seed suffix. Runs of the supervised control
``grpo`` are left out: its reward is the ground truth, so its reward accuracy is 1 by
construction and the Model Collapse Step (MCS) is defined for intrinsic rewards.

Per run: the MCS of :func:`mgrpo.report.model_collapse.model_collapse_step` (the first step
whose reward-accuracy upper bound RA+ = 1 - |reward/hit_rate - policy/accuracy| is below the
threshold) at the paper's threshold 1% and at looser ones (the lab's runs never get near 1%,
see the output), and the final validation accuracy (the last ``val/accuracy`` point). A run
that never reaches the threshold is censored at its last step + 1, the latest possible
collapse (Spearman's ranks put all of them tied at the top). Also the threshold-free reading
min RA+ over the run.

Statistics per sweep with at least ``MIN_RUNS`` intrinsic runs: Spearman's rho between MCS and
final accuracy over runs, its two-sided p-value (scipy), and a 95% percentile bootstrap
interval (``RESAMPLES`` resamples of the runs with replacement, numpy seed 0; resamples where
either variable is constant have no rho and are dropped, their count shown; not shown when
fewer than ``MIN_REACHED`` runs reach the threshold); then the same over arms (arm means of
censored MCS and of final accuracy, resampling arms) for sweeps with at least ``MIN_ARMS``
arms. A baseline row reads what RA+ is built from: the training accuracy
(``policy/accuracy``, the mean of its last ``END_WINDOW`` steps), which needs the same labels.
"""

from __future__ import annotations

import argparse
import re
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from scipy import stats

from mgrpo.report.arms import END_WINDOW
from mgrpo.report.model_collapse import (
    ACCURACY_KEY,
    MCS_THRESHOLD,
    model_collapse_step,
    reward_accuracy_bounds,
)
from mgrpo.report.runs import load_run, metrics_file

THRESHOLDS = (MCS_THRESHOLD, 0.1, 0.2, 0.3, 0.4, 0.5)
CONTROL = "grpo"
SEED = re.compile(r"^(?P<arm>.+)-s\d+$")
MIN_RUNS = 8
MIN_ARMS = 4
MIN_REACHED = 3  # runs (arms) reaching a threshold before its rho is shown
RESAMPLES = 10_000
VAL_KEY = "val/accuracy"


@dataclass(frozen=True)
class Run:
    sweep: str
    name: str
    arm: str
    last_step: int
    final_val: float
    start_val: float
    mcs: dict[float, int | None]  # threshold -> step (None: not reached)
    lowest: float  # min RA+ over the run
    lowest_lower: float  # min RA- over the run: RA < 1% is possible only where RA- < 1%
    end_train_accuracy: float  # mean policy/accuracy of the last END_WINDOW steps

    def censored(self, threshold: float) -> int:
        step = self.mcs[threshold]
        return self.last_step + 1 if step is None else step


def load(results: Path) -> list[Run]:
    runs = []
    for path in sorted(p.parent for p in results.rglob("metrics.jsonl*")):
        if not metrics_file(path).is_file():
            continue
        log = load_run(path, lenient=True).metrics
        _, vals = log.series(VAL_KEY)
        match = SEED.match(path.name)
        arm = match["arm"] if match else path.name
        if arm == CONTROL or vals.size < 2 or log.last_step is None:
            continue
        readings = {t: model_collapse_step(log, t) for t in THRESHOLDS}
        if readings[MCS_THRESHOLD].steps_read == 0:
            continue  # unlabelled: no reward accuracy
        _, train_accuracy = log.series(ACCURACY_KEY)
        _, lower, _ = reward_accuracy_bounds(log)
        runs.append(Run(str(path.parent.relative_to(results)), path.name, arm,
                        int(log.last_step), float(vals[-1]), float(vals[0]),
                        {t: r.step for t, r in readings.items()},
                        float(readings[MCS_THRESHOLD].lowest), float(lower.min()),
                        float(train_accuracy[-END_WINDOW:].mean())))
    return runs


def _ranks(a: np.ndarray) -> np.ndarray:
    return stats.rankdata(a, axis=-1)


def spearman_interval(x: np.ndarray, y: np.ndarray) -> tuple[float, float, float, float, int]:
    """(rho, p, low, high, dropped): Spearman's rho with a percentile bootstrap interval."""
    if np.ptp(x) == 0 or np.ptp(y) == 0:
        return (float("nan"),) * 4 + (RESAMPLES,)
    rho, p = stats.spearmanr(x, y)
    rng = np.random.default_rng(0)
    idx = rng.integers(0, len(x), size=(RESAMPLES, len(x)))
    rx, ry = _ranks(x[idx]), _ranks(y[idx])  # (RESAMPLES, n) ranks of each resample
    rx -= rx.mean(axis=1, keepdims=True)
    ry -= ry.mean(axis=1, keepdims=True)
    denom = np.sqrt((rx**2).sum(axis=1) * (ry**2).sum(axis=1))
    ok = denom > 0
    rhos = (rx * ry).sum(axis=1)[ok] / denom[ok]
    low, high = np.percentile(rhos, [2.5, 97.5])
    return float(rho), float(p), float(low), float(high), int((~ok).sum())


def _fmt_rho(rho: float, p: float, low: float, high: float, dropped: int) -> str:
    if np.isnan(rho):
        return "undefined (MCS or accuracy constant)"
    note = f"; {dropped} resamples without rho" if dropped else ""
    return f"{rho:+.2f} (p = {p:.2g}; 95% CI {low:+.2f} to {high:+.2f}{note})"


def sweep_tables(sweep: str, runs: list[Run]) -> list[str]:
    out = [f"### {sweep}", ""]
    arms = sorted({r.arm for r in runs})
    steps = sorted({r.last_step for r in runs})
    out.append(f"{len(runs)} intrinsic runs, {len(arms)} arms ({', '.join(arms)}); "
               f"{'/'.join(map(str, steps))} steps; final validation accuracy "
               f"{min(r.final_val for r in runs):.3f} to {max(r.final_val for r in runs):.3f}.")
    out += ["", "Over runs:", "",
            "| reading | runs reaching it | Spearman rho with final val accuracy |",
            "|---|---|---|"]
    y = np.array([r.final_val for r in runs])
    for t in THRESHOLDS:
        x = np.array([r.censored(t) for r in runs], dtype=float)
        reached = sum(r.mcs[t] is not None for r in runs)
        label = f"MCS, RA+ < {t:g}" + (" (the paper's)" if t == MCS_THRESHOLD else "")
        rho = (_fmt_rho(*spearman_interval(x, y)) if reached >= MIN_REACHED
               else f"not computed: fewer than {MIN_REACHED} runs reach it")
        out.append(f"| {label} | {reached}/{len(runs)} | {rho} |")
    x = np.array([r.lowest for r in runs])
    out.append(f"| min RA+ over the run | - | {_fmt_rho(*spearman_interval(x, y))} |")
    x = np.array([r.end_train_accuracy for r in runs])
    out.append(f"| baseline: training accuracy, last {END_WINDOW} steps (labels) | - | "
               f"{_fmt_rho(*spearman_interval(x, y))} |")
    if len(arms) >= MIN_ARMS:
        out += ["", "Over arms (arm means):", "",
                "| reading | Spearman rho of arm means |", "|---|---|"]
        ya = np.array([np.mean([r.final_val for r in runs if r.arm == a]) for a in arms])
        for t in THRESHOLDS:
            xa = np.array([np.mean([r.censored(t) for r in runs if r.arm == a]) for a in arms])
            reached = sum(any(r.mcs[t] is not None for r in runs if r.arm == a) for a in arms)
            rho = (_fmt_rho(*spearman_interval(xa, ya)) if reached >= MIN_REACHED
                   else f"not computed: fewer than {MIN_REACHED} arms have a run reaching it")
            out.append(f"| MCS, RA+ < {t:g} | {rho} |")
    return out + [""]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("results", nargs="?", type=Path, default=Path("results/lab-study"))
    parser.add_argument("--machine", required=True, help="the machine, for the header")
    parser.add_argument("--date", required=True, help="the date, for the header")
    args = parser.parse_args(argv)
    runs = load(args.results)
    sweeps = sorted({r.sweep for r in runs})
    lines = [
        "# Model Collapse Step (URLVR) against final accuracy in the lab study",
        "",
        f"<!-- written by: python docs/lab-study/model-collapse-step.py {args.results} "
        f"--machine '{args.machine}' --date {args.date} -->",
        f"Written by `python docs/lab-study/model-collapse-step.py {args.results}` on "
        f"{args.machine}, {args.date}. The definition, and how mgrpo's metrics bound it: "
        "`src/mgrpo/report/model_collapse.py`; what is read and tested: the script's docstring.",
        "",
        "MCS is the first step whose reward-accuracy upper bound RA+ = 1 - |reward/hit_rate - "
        "policy/accuracy| falls below the threshold; a run that never gets there counts as "
        "collapsing after its last step. Supervised grpo runs are left out (reward accuracy 1 "
        "by construction).",
        "",
    ]
    lowest = min(runs, key=lambda r: r.lowest)
    possible = [r for r in runs if r.lowest_lower < MCS_THRESHOLD]
    lines.append(f"Lowest RA+ of any of the {len(runs)} intrinsic runs: {lowest.lowest:.3f} "
                 f"({lowest.sweep}/{lowest.name}), so none is certain to reach the paper's "
                 f"RA < {MCS_THRESHOLD:g}. The lower bound RA- = |1 - r - a| leaves it possible "
                 f"at some step of {len(possible)} of them (the metrics cannot tell).")
    lines.append("")
    for sweep in sweeps:
        members = [r for r in runs if r.sweep == sweep]
        if len(members) >= MIN_RUNS:
            lines += sweep_tables(sweep, members)
    skipped = [f"{s} ({sum(r.sweep == s for r in runs)})" for s in sweeps
               if sum(r.sweep == s for r in runs) < MIN_RUNS]
    if skipped:
        lines.append(f"Sweeps with fewer than {MIN_RUNS} intrinsic runs, not analysed: "
                     f"{', '.join(skipped)}.")
    sys.stdout.write("\n".join(lines).rstrip() + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
