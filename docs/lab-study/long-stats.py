"""Tables of the slow regime (docs/lab-study.md, "A slow regime") with 95% confidence intervals.

    python docs/lab-study/long-stats.py [SWEEP_DIR] > docs/lab-study/long-regime/stats.md

Per arm over seeds: validation accuracy at step 0, best, final (%), best - step 0, the mean of
the validation points at steps 20-100 minus step 0 (a rise measure that is not a maximum over
noisy points) and final - best (points) as mean with a 95% Student-t interval, collapse count and step
(mgrpo.report.seeds.collapse_step, 10-point margin), reward over the first and last 10 steps.
Paired by seed against srt: final and best accuracy differences, mean with 95% t and
percentile-bootstrap intervals (10 000 resamples, seed 0). Runs are grouped by directory
name without its `-s<seed>` suffix; only runs that reached trainer.max_steps count.
"""

from __future__ import annotations

import re
import sys
from pathlib import Path

import numpy as np
from scipy import stats

from mgrpo.report.runs import load_run
from mgrpo.report.seeds import collapse_step
from mgrpo.report.sweep import run_state

EARLY_END = 100  # the early window: validation points at steps 1..EARLY_END
SEED = re.compile(r"^(?P<arm>.+)-s(?P<seed>\d+)$")


def t_ci(values: list[float]) -> str:
    a = np.asarray(values, dtype=float)
    if a.size < 2:
        return f"{a.mean():+.1f} (n = 1)" if a.size else "—"
    half = stats.t.ppf(0.975, a.size - 1) * a.std(ddof=1) / np.sqrt(a.size)
    return f"{a.mean():+.1f} [{a.mean() - half:+.1f}, {a.mean() + half:+.1f}]"


def boot_ci(values: list[float]) -> str:
    a = np.asarray(values, dtype=float)
    if a.size < 2:
        return "—"
    rng = np.random.default_rng(0)
    means = rng.choice(a, size=(10_000, a.size), replace=True).mean(axis=1)
    lo, hi = np.percentile(means, [2.5, 97.5])
    return f"[{lo:+.1f}, {hi:+.1f}]"


def mean_sd(values: list[float], fmt: str = "{:.1f}") -> str:
    a = np.asarray(values, dtype=float)
    if a.size == 0:
        return "—"
    sd = f" ± {fmt.format(a.std(ddof=1))}" if a.size > 1 else ""
    return fmt.format(a.mean()) + sd


def main(sweep: Path) -> None:
    runs: dict[str, dict[int, dict]] = {}
    for path in sorted(p for p in sweep.iterdir() if p.is_dir()):
        match = SEED.match(path.name)
        if not match or run_state(path) != "complete":
            continue
        log = load_run(path, lenient=True).metrics
        steps, val = log.series("val/accuracy")
        _, reward = log.series("reward/mean")
        runs.setdefault(match["arm"], {})[int(match["seed"])] = dict(
            step0=100 * val[0], best=100 * val.max(), final=100 * val[-1],
            best_step=int(steps[val.argmax()]), collapse=collapse_step(log),
            r0=reward[:10].mean(), r1=reward[-10:].mean(),
            curve=[(int(s), 100 * v) for s, v in zip(steps, val) if s % 80 == 0],
            early=100 * val[(steps > 0) & (steps <= EARLY_END)].mean())
    print("| arm | seeds | step 0 (%) | best (%) | best step | final (%) | best - step 0 (points, 95% CI) "
          "| mean of steps 20-100 - step 0 (points, 95% CI) | final - best (points, 95% CI) | collapsed "
          "| collapse step | reward first -> last 10 steps |")
    print("|---|---|---|---|---|---|---|---|---|---|---|---|")
    for arm, by_seed in runs.items():
        rows = list(by_seed.values())
        col = [r["collapse"] for r in rows if r["collapse"] is not None]
        print(f"| {arm} | {','.join(map(str, sorted(by_seed)))} | {mean_sd([r['step0'] for r in rows])} "
              f"| {mean_sd([r['best'] for r in rows])} | {mean_sd([r['best_step'] for r in rows], '{:.0f}')} "
              f"| {mean_sd([r['final'] for r in rows])} "
              f"| {t_ci([r['best'] - r['step0'] for r in rows])} "
              f"| {t_ci([r['early'] - r['step0'] for r in rows])} "
              f"| {t_ci([r['final'] - r['best'] for r in rows])} | {len(col)}/{len(rows)} "
              f"| {mean_sd(col, '{:.0f}') if col else '—'} "
              f"| {np.mean([r['r0'] for r in rows]):.3f} -> {np.mean([r['r1'] for r in rows]):.3f} |")
    print("\n| run | step 0 (%) | best (%) at step | final (%) | collapse step | val accuracy every 80 steps (%) |")
    print("|---|---|---|---|---|---|")
    for arm, by_seed in runs.items():
        for seed, r in sorted(by_seed.items()):
            curve = ", ".join(f"{s}: {v:.1f}" for s, v in r["curve"])
            print(f"| {arm}-s{seed} | {r['step0']:.1f} | {r['best']:.1f} at {r['best_step']} "
                  f"| {r['final']:.1f} | {r['collapse'] if r['collapse'] is not None else '—'} "
                  f"| {curve} |")
    ref = runs.get("srt")
    if not ref:
        return
    print("\n| arm minus srt, same seed | seeds | final (points): mean [95% t] | bootstrap 95% "
          "| best (points): mean [95% t] | bootstrap 95% | seeds above srt (final) |")
    print("|---|---|---|---|---|---|---|")
    for arm, by_seed in runs.items():
        if arm == "srt":
            continue
        common = sorted(set(by_seed) & set(ref))
        d_final = [by_seed[s]["final"] - ref[s]["final"] for s in common]
        d_best = [by_seed[s]["best"] - ref[s]["best"] for s in common]
        if not common:
            continue
        print(f"| {arm} | {','.join(map(str, common))} | {t_ci(d_final)} | {boot_ci(d_final)} "
              f"| {t_ci(d_best)} | {boot_ci(d_best)} | {sum(d > 0 for d in d_final)}/{len(common)} |")


if __name__ == "__main__":
    main(Path(sys.argv[1] if len(sys.argv) > 1 else "docs/lab-study/long-regime"))
