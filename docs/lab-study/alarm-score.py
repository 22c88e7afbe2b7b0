"""Score the collapse alarm on a sweep of lab runs (docs/lab-study.md), tuned without peeking.

    python docs/lab-study/alarm-score.py [SWEEP_DIR] [--tune 1-5] [--held-out 6-10] > alarm.md

Truth per run: the collapse criterion (:func:`mgrpo.report.arms.collapse_step`, 10 points
below the best and staying there, with the reward up), which looks at the whole curve; the
alarm (:class:`mgrpo.train.logs.alarm.CollapseAlarm`, replayed over ``metrics.jsonl`` with the
thresholds under test) sees only the past. Recall = collapsed runs on which the alarm fired /
collapsed runs; false alarms = runs that did not collapse on which it fired (label-free arms
and the ground-truth grpo control counted apart). Timing: the first alarm step minus the
collapse step (negative = the alarm came first).

Tuning without peeking: the grid below is scored on the tuning seeds (``--tune``), the best
config by (recall - false-alarm rate, then earlier alarms, then the config closest to the
defaults) is chosen there, and both the defaults and the chosen config are then reported on
the held-out seeds (``--held-out``), which played no part in the choice.
"""

from __future__ import annotations

import argparse
import dataclasses
import itertools
import re
from pathlib import Path

import numpy as np

from mgrpo.config import CollapseAlarmConfig
from mgrpo.report.arms import collapse_step
from mgrpo.report.runs import load_run
from mgrpo.report.sweep import run_state
from mgrpo.train.logs.alarm import replay

SEED = re.compile(r"^(?P<arm>.+)-s(?P<seed>\d+)$")
CONTROL = "grpo"  # ground-truth reward: its runs are the healthy controls
GRID = {
    "val_drop": (0.03, 0.05, 0.08, 0.10),
    "reward_rise": (0.0, 0.05, 0.10),
    "val_patience": (1, 2, 3),
    "entropy_fraction": (0.2, 0.6),
}


@dataclasses.dataclass(frozen=True)
class Run:
    arm: str
    seed: int
    collapse: int | None
    records: list


def load(sweep: Path) -> list[Run]:
    runs = []
    for path in sorted(p for p in sweep.iterdir() if p.is_dir()):
        match = SEED.match(path.name)
        if not match or run_state(path) != "complete":
            continue
        log = load_run(path, lenient=True).metrics
        runs.append(Run(match["arm"], int(match["seed"]), collapse_step(log), log.records))
    return runs


def score(runs: list[Run], config: CollapseAlarmConfig) -> dict:
    hit, miss, false_lf, quiet_lf, false_ctl, quiet_ctl, delays = 0, 0, 0, 0, 0, 0, []
    for run in runs:
        states = replay(run.records, config)
        first = states[0].step if states else None
        if run.collapse is not None:
            if first is None:
                miss += 1
            else:
                hit += 1
                delays.append(first - run.collapse)
        elif run.arm == CONTROL:
            false_ctl += first is not None
            quiet_ctl += first is None
        else:
            false_lf += first is not None
            quiet_lf += first is None
    collapsed, healthy = hit + miss, false_lf + quiet_lf + false_ctl + quiet_ctl
    recall = hit / collapsed if collapsed else float("nan")
    false_rate = (false_lf + false_ctl) / healthy if healthy else float("nan")
    return dict(hit=hit, collapsed=collapsed, false_lf=false_lf, n_lf=false_lf + quiet_lf,
                false_ctl=false_ctl, n_ctl=false_ctl + quiet_ctl, recall=recall,
                false_rate=false_rate,
                delay=float(np.median(delays)) if delays else float("nan"),
                early=sum(d <= 0 for d in delays))


def row(name: str, seeds: str, s: dict) -> str:
    delay = "—" if np.isnan(s["delay"]) else f"{s['delay']:+.0f}"
    return (f"| {name} | {seeds} | {s['hit']}/{s['collapsed']} | {s['false_lf']}/{s['n_lf']} "
            f"| {s['false_ctl']}/{s['n_ctl']} | {delay} | {s['early']}/{s['hit']} |")


def seed_range(text: str) -> range:
    low, _, high = text.partition("-")
    return range(int(low), int(high or low) + 1)


def range_text(seeds: range) -> str:
    """The inverse of :func:`seed_range`: ``range(1, 6)`` -> ``1-5``."""
    return f"{seeds.start}-{seeds.stop - 1}"


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("sweep", type=Path, nargs="?", default=Path("docs/lab-study/long-regime"))
    parser.add_argument("--tune", type=seed_range, default=range(1, 6), help="e.g. 1-5")
    parser.add_argument("--held-out", type=seed_range, default=range(6, 11), help="e.g. 6-10")
    args = parser.parse_args(argv)
    runs = load(args.sweep)
    tune = [r for r in runs if r.seed in args.tune]
    held = [r for r in runs if r.seed in args.held_out]
    default = CollapseAlarmConfig()
    base = dataclasses.asdict(default)
    best_key, best_cfg, best_changes = None, default, {}
    for values in itertools.product(*GRID.values()):
        changes = {k: v for k, v in zip(GRID, values) if v != base[k]}
        cfg = dataclasses.replace(default, **dict(zip(GRID, values)))
        s = score(tune, cfg)
        delay = s["delay"] if not np.isnan(s["delay"]) else np.inf
        key = (s["recall"] - s["false_rate"], -delay, -len(changes))
        if best_key is None or key > best_key:
            best_key, best_cfg, best_changes = key, cfg, changes
    chosen = ", ".join(f"{k}={v}" for k, v in best_changes.items()) or "the defaults"
    tune_text, held_text = range_text(args.tune), range_text(args.held_out)
    print(f"<!-- written by: python docs/lab-study/alarm-score.py {args.sweep} --tune "
          f"{tune_text} --held-out {held_text} -->\n")
    print(f"Runs: {len(runs)} ({len(tune)} on tuning seeds {tune_text}, {len(held)} on "
          f"held-out seeds {held_text}). Grid: "
          + "; ".join(f"{k} in {list(v)}" for k, v in GRID.items())
          + f". Chosen on the tuning seeds: {chosen}.\n")
    print("| alarm thresholds | seeds | recall (fired / collapsed) | false alarms, label-free "
          "runs that did not collapse | false alarms, grpo control | median first alarm - "
          "collapse step | alarms at or before the collapse step |")
    print("|---|---|---|---|---|---|---|")
    for name, cfg in (("defaults", default), (f"tuned ({chosen})", best_cfg)):
        for label, subset in (("tuning", tune), ("held-out", held), ("all", runs)):
            if subset:
                print(row(name, label, score(subset, cfg)))


if __name__ == "__main__":
    main()
