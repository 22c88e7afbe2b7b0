"""Tables with confidence intervals over the seeds of a sweep (docs/lab-study.md).

    python docs/lab-study/stats.py docs/lab-study/long-regime > docs/lab-study/long-regime/stats.md
    python docs/lab-study/stats.py docs/lab-study/runs --arms srt,m-grpo,m-grpo-N8 \
        > docs/lab-study/runs/stats.md

Runs are grouped by directory name without its ``-s<seed>`` suffix (``--arms`` keeps only the
named groups); only runs that reached ``trainer.max_steps`` count. Accuracies are the logged
``val/accuracy`` in percent; differences in points. With T the last validation step of the
runs, the early window is the validation steps in [T/20, T/4] (steps 20-100 of a 400-step run)
and the three phases of the mechanism table are steps 1-T/8, the T/8 steps centred on T/2 and
the last T/8 (1-50, 176-225, 351-400).

Per arm (mean over seeds, 95% Student-t interval where marked):

* step 0, best, final, best step; ``final - step 0``; ``best - step 0``;
* ``best3 - step 0``: the best of the 3-point running mean of the validation curve, a peak
  less inflated by evaluation noise than the maximum of many noisy points;
* ``early - step 0``: mean of the validation points in the early window minus step 0;
* AUC: mean of the validation points after step 0 minus step 0 (the area under the curve
  relative to the start, per step);
* ``final - best``; collapse count and step (:func:`mgrpo.report.seeds.collapse_step`,
  10-point margin, confirmed by ``--collapse-confirm`` later validation points, default 2),
  and the count without the confirmation (a drop on the last points counted too, the rule
  the earlier tables used); reward over the first and last 10 steps;
* the evaluation noise: sigma = SD of successive validation differences / sqrt(2) (the drift
  between two validation points is small against it), and ``E_n sigma``, the expected maximum
  of the n validation points after step 0 drawn independently from N(0, sigma^2) (E_20 =
  1.87): what ``best - step 0`` reads on a flat curve from evaluation noise alone.

Contrasts (paired by seed, on the seeds both arms ran): every arm against srt, each variant
against the arm it is named after (``m-grpo-N8`` against ``m-grpo``) and each ``--pair``, on
final accuracy and on AUC. Each: mean difference, 95% t and percentile-bootstrap intervals
(10 000 resamples, seed 0), the paired t-test p-value, and the p-value Holm-corrected over the
whole family of contrasts printed in that table. The phenomenon (SRT's rise and collapse) is
tested by one-sample t-tests on srt's own differences, Holm over those rows. Collapse counts:
each arm against srt by Fisher's exact test (two-sided), Holm over the arms. Mechanism table:
diagnostics of the training step averaged over three phases of the run (steps 1-50, 176-225,
351-400), then over seeds.
"""

from __future__ import annotations

import argparse
import re
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from mgrpo.report.runs import load_run
from mgrpo.report.seeds import COLLAPSE_CONFIRM_POINTS, Stat, collapse_step
from mgrpo.report.stats import (
    bootstrap_interval,
    expected_max_normal,
    fisher_exact_pvalue,
    fmt_p,
    holm,
    t_interval,
    t_pvalue,
)
from mgrpo.report.sweep import parse_seeds, run_state

SEED = re.compile(r"^(?P<arm>.+)-s(?P<seed>\d+)$")
REFERENCE = "srt"
#: order of the rows; arms not listed follow in name order
ARM_ORDER = ("srt", "ttrl", "m-grpo", "m-grpo-N8", "m-grpo-noIQR", "m-grpo-mvw3",
             "m-grpo-ties", "co-rewarding-ii", "co-rewarding-ii-m99", "co-rewarding-ii-N8", "grpo")
DIAGNOSTICS = (  # (metrics key, column title, scale)
    ("label/accuracy", "pseudo-label acc (%)", 100),
    ("label/tie_fraction", "tied votes (%)", 100),
    ("label/vote_share", "vote share", 1),
    ("policy/accuracy", "rollout acc (%)", 100),
    ("pool/maj@G", "maj@G of the pool (%)", 100),
    ("entropy/policy", "entropy policy", 1),
    ("entropy/momentum", "entropy momentum", 1),
    ("filter/dropped_policy", "IQR-dropped policy (%)", 100),
    ("filter/dropped_momentum", "IQR-dropped momentum (%)", 100),
    ("filter/dropped_accuracy", "acc of dropped (%)", 100),
    ("filter/kept_accuracy", "acc of kept (%)", 100),
)


def t_ci(values: list[float]) -> str:
    return t_interval(values).fmt()


def boot_ci(values: list[float]) -> str:
    return bootstrap_interval(values).bounds()


def phases(last: int) -> tuple[tuple[int, int], ...]:
    """Steps 1..T/8, the T/8 steps centred on T/2, the last T/8 (T = `last`)."""
    eighth = max(1, last // 8)
    mid = last // 2 - eighth // 2
    return (1, eighth), (mid + 1, mid + eighth), (last - eighth + 1, last)


def phase_means(log, key: str, last: int) -> list[float]:
    steps, values = log.series(key)
    out = []
    for lo, hi in phases(last):
        inside = values[(steps >= lo) & (steps <= hi)]
        out.append(float(inside.mean()) if inside.size else float("nan"))
    return out


def load(sweep: Path, arms: set[str] | None = None, seeds: set[int] | None = None,
         confirm: int = COLLAPSE_CONFIRM_POINTS) -> dict[str, dict[int, dict]]:
    runs: dict[str, dict[int, dict]] = {}
    for path in sorted(p for p in sweep.iterdir() if p.is_dir()):
        match = SEED.match(path.name)
        if (not match or (arms and match["arm"] not in arms)
                or (seeds and int(match["seed"]) not in seeds) or run_state(path) != "complete"):
            continue
        log = load_run(path, lenient=True).metrics
        steps, val = log.series("val/accuracy")
        val = 100 * val
        _, reward = log.series("reward/mean")
        smooth = np.convolve(val, np.ones(3) / 3, mode="valid")
        last = int(steps[-1])
        early = val[(steps >= last / 20) & (steps <= last / 4) & (steps > 0)]
        runs.setdefault(match["arm"], {})[int(match["seed"])] = dict(
            step0=val[0], best=val.max(), final=val[-1], best3=smooth.max(),
            best_step=int(steps[val.argmax()]), collapse=collapse_step(log, confirm=confirm),
            collapse_unconfirmed=collapse_step(log, confirm=0),
            r0=reward[:10].mean(), r1=reward[-10:].mean(), auc=val[1:].mean() - val[0],
            curve=[(int(s), v) for s, v in zip(steps, val) if s % max(1, last // 5) == 0],
            points=val.size - 1, early=early.mean(), noise=np.diff(val).std(ddof=1) / np.sqrt(2),
            last=last, phases={key: phase_means(log, key, last) for key, _, _ in DIAGNOSTICS})
    order = {arm: i for i, arm in enumerate(ARM_ORDER)}
    return dict(sorted(runs.items(), key=lambda kv: (order.get(kv[0], len(order)), kv[0])))


def per_arm_table(runs: dict[str, dict[int, dict]]) -> None:
    print("## Per arm (mean ± SD over seeds; differences: mean [95% t interval], points)\n")
    print("| arm | n | seeds | step 0 (%) | best (%) | best step | final (%) | final - step 0 "
          "| best - step 0 | best3 - step 0 | early - step 0 | AUC - step 0 "
          "| final - best | collapsed | collapsed, unconfirmed drops too | collapse step "
          "| reward first -> last 10 steps | eval noise sigma (E_n sigma) |")
    print("|" + "---|" * 18)
    for arm, by_seed in runs.items():
        rows = [by_seed[s] for s in sorted(by_seed)]
        col = [r["collapse"] for r in rows if r["collapse"] is not None]
        unconfirmed = sum(r["collapse_unconfirmed"] is not None for r in rows)
        noise = float(np.mean([r["noise"] for r in rows]))
        n_points = rows[0]["points"]
        seeds = sorted(by_seed)
        seed_text = f"{seeds[0]}-{seeds[-1]}" if seeds == list(range(seeds[0], seeds[-1] + 1)) \
            else ",".join(map(str, seeds))

        def d(key: str, base: str = "step0", rows: list[dict] = rows) -> str:
            return t_ci([r[key] - r[base] for r in rows])

        print(f"| {arm} | {len(rows)} | {seed_text} | {Stat([r['step0'] for r in rows]).fmt()} "
              f"| {Stat([r['best'] for r in rows]).fmt()} "
              f"| {Stat([r['best_step'] for r in rows]).fmt(digits=0)} "
              f"| {Stat([r['final'] for r in rows]).fmt()} | {d('final')} | {d('best')} "
              f"| {d('best3')} | {d('early')} | {t_ci([r['auc'] for r in rows])} "
              f"| {d('final', 'best')} | {len(col)}/{len(rows)} | {unconfirmed}/{len(rows)} "
              f"| {Stat(col).fmt(digits=0)} "
              f"| {np.mean([r['r0'] for r in rows]):.3f} -> {np.mean([r['r1'] for r in rows]):.3f} "
              f"| {noise:.1f} ({expected_max_normal(n_points) * noise:.1f}) |")


def phenomenon_table(runs: dict[str, dict[int, dict]]) -> None:
    ref = runs.get(REFERENCE)
    if not ref:
        return
    rows = [ref[s] for s in sorted(ref)]
    tests = [
        ("best - step 0 (rise, the maximum of the validation points)", [r["best"] - r["step0"] for r in rows]),
        ("best3 - step 0 (rise, 3-point running mean)", [r["best3"] - r["step0"] for r in rows]),
        (f"early (steps {rows[0]['last'] // 20}-{rows[0]['last'] // 4}) - step 0",
         [r["early"] - r["step0"] for r in rows]),
        ("final - best (fall)", [r["final"] - r["best"] for r in rows]),
        ("final - best3 (fall from the smoothed peak)", [r["final"] - r["best3"] for r in rows]),
        ("final - step 0", [r["final"] - r["step0"] for r in rows]),
        ("reward: last 10 - first 10 steps (x 100)", [100 * (r["r1"] - r["r0"]) for r in rows]),
    ]
    adjusted = holm([t_pvalue(v) for _, v in tests])
    print(f"\n## Does {REFERENCE} rise, then collapse? (one-sample, n = {len(rows)}; "
          "Holm over these rows)\n")
    print("| quantity | mean [95% t] | bootstrap 95% | seeds > 0 | p (t) | p (Holm) |")
    print("|---|---|---|---|---|---|")
    for (name, values), p_adj in zip(tests, adjusted):
        print(f"| {name} | {t_ci(values)} | {boot_ci(values)} "
              f"| {sum(v > 0 for v in values)}/{len(values)} | {fmt_p(t_pvalue(values))} "
              f"| {fmt_p(p_adj)} |")


def variant_base(arm: str, runs: dict) -> str | None:
    """The arm a variant is named after (``m-grpo-N8`` -> ``m-grpo``; ``co-rewarding-ii-m99``
    -> ``co-rewarding-ii``): the longest other arm name that ``arm`` extends with ``-``."""
    bases = [b for b in runs if b != REFERENCE and arm.startswith(b + "-")]
    return max(bases, key=len) if bases else None


def contrasts(runs: dict[str, dict[int, dict]], extra: Sequence[tuple[str, str]] = ()) -> None:
    pairs = [(arm, REFERENCE) for arm in runs if arm != REFERENCE]
    pairs += [(arm, base) for arm in runs if (base := variant_base(arm, runs))]
    pairs += [pair for pair in extra if pair not in pairs]
    rows = []
    for arm, base in pairs:
        if base not in runs:
            continue
        common = sorted(set(runs[arm]) & set(runs[base]))
        if len(common) < 2:
            continue
        for key, label in (("final", "final"), ("auc", "AUC")):
            diff = [runs[arm][s][key] - runs[base][s][key] for s in common]
            rows.append((arm, base, label, common, diff, t_pvalue(diff)))
    adjusted = holm([row[-1] for row in rows])
    print(f"\n## Paired contrasts, same seed (Holm over all {len(rows)} rows)\n")
    print("| arm | minus | outcome | n | mean [95% t] (points) | bootstrap 95% | seeds above "
          "| p (t) | p (Holm) |")
    print("|---|---|---|---|---|---|---|---|---|")
    for (arm, base, label, common, diff, p), p_adj in zip(rows, adjusted):
        print(f"| {arm} | {base} | {label} | {len(common)} | {t_ci(diff)} | {boot_ci(diff)} "
              f"| {sum(x > 0 for x in diff)}/{len(diff)} | {fmt_p(p)} | {fmt_p(p_adj)} |")


def collapse_counts(runs: dict[str, dict[int, dict]]) -> None:
    ref = runs.get(REFERENCE)
    if not ref:
        return
    ref_c = sum(r["collapse"] is not None for r in ref.values())
    rows = []
    for arm, by_seed in runs.items():
        if arm == REFERENCE:
            continue
        c = sum(r["collapse"] is not None for r in by_seed.values())
        rows.append((arm, c, len(by_seed), fisher_exact_pvalue(c, len(by_seed), ref_c, len(ref))))
    adjusted = holm([row[-1] for row in rows])
    print(f"\n## Collapse counts against {REFERENCE} ({ref_c}/{len(ref)} collapsed): Fisher's "
          "exact test, two-sided, Holm over the arms\n")
    print("| arm | collapsed | p (Fisher) | p (Holm) |")
    print("|---|---|---|---|")
    for (arm, c, n, p), p_adj in zip(rows, adjusted):
        print(f"| {arm} | {c}/{n} | {fmt_p(p)} | {fmt_p(p_adj)} |")


def mechanism_table(runs: dict[str, dict[int, dict]]) -> None:
    last = next(iter(next(iter(runs.values())).values()))["last"]
    windows = " / ".join(f"{lo}-{hi}" for lo, hi in phases(last))
    print(f"\n## What the step did (mean over seeds of each phase's mean: steps {windows})\n")
    print("| arm | " + " | ".join(title for _, title, _ in DIAGNOSTICS) + " |")
    print("|" + "---|" * (len(DIAGNOSTICS) + 1))
    for arm, by_seed in runs.items():
        cells = []
        for key, _, scale in DIAGNOSTICS:
            per_phase = np.array([r["phases"][key] for r in by_seed.values()]) * scale
            if np.isnan(per_phase).all() or (key.startswith("label/")
                                             and np.nanmax(np.abs(per_phase)) == 0):
                cells.append("—")  # not logged, or an arm without a vote (grpo logs 0)
                continue
            means = np.nanmean(per_phase, axis=0)
            fmt = "{:.0f}" if scale == 100 else "{:.3f}"
            logged = int((~np.isnan(per_phase)).all(axis=1).sum())
            note = f" (n = {logged})" if logged < len(per_phase) else ""
            cells.append(" / ".join("—" if np.isnan(m) else fmt.format(m) for m in means) + note)
        print(f"| {arm} | " + " | ".join(cells) + " |")


def per_run_table(runs: dict[str, dict[int, dict]]) -> None:
    print("\n## Per run\n")
    print("| run | step 0 (%) | best (%) at step | final (%) | collapse step "
          "| val accuracy at 0, T/5, ..., T (%) |")
    print("|---|---|---|---|---|---|")
    for arm, by_seed in runs.items():
        for seed, r in sorted(by_seed.items()):
            curve = ", ".join(f"{s}: {v:.1f}" for s, v in r["curve"])
            print(f"| {arm}-s{seed} | {r['step0']:.1f} | {r['best']:.1f} at {r['best_step']} "
                  f"| {r['final']:.1f} | {r['collapse'] if r['collapse'] is not None else '—'} "
                  f"| {curve} |")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("sweep", type=Path, help="sweep directory (runs named ARM-sSEED)")
    parser.add_argument("--arms", default=None, help="comma list of arms to keep (default all)")
    parser.add_argument("--seeds", default=None,
                        help="seeds to keep, a comma list or range such as 6-10 (default all)")
    parser.add_argument("--pair", action="append", default=[], metavar="ARM:BASE",
                        help="one more paired contrast, ARM minus BASE, in the contrast family")
    parser.add_argument("--collapse-confirm", type=int, default=COLLAPSE_CONFIRM_POINTS,
                        metavar="N", help="later validation points that must confirm a collapse "
                        f"(default {COLLAPSE_CONFIRM_POINTS}; 0: the rule without confirmation)")
    args = parser.parse_args(argv)
    try:
        seeds = set(parse_seeds(args.seeds)) if args.seeds else None
    except ValueError as err:
        parser.error(str(err))
    extra = []
    for text in args.pair:
        arm, sep, base = text.partition(":")
        if not sep or not arm or not base:
            parser.error(f"--pair {text!r}: expected ARM:BASE")
        extra.append((arm, base))
    runs = load(args.sweep, set(args.arms.split(",")) if args.arms else None, seeds,
                args.collapse_confirm)
    if not runs:
        parser.error(f"{args.sweep}: no complete run named ARM-sSEED")
    for arm, base in extra:
        if arm not in runs or base not in runs:
            parser.error(f"--pair {arm}:{base}: no complete runs of "
                         f"{arm if arm not in runs else base!r} in {args.sweep}")
    shown = (" --arms " + args.arms if args.arms else "") + (
        " --seeds " + args.seeds if args.seeds else "") + "".join(
        " --pair " + text for text in args.pair) + (
        f" --collapse-confirm {args.collapse_confirm}"
        if args.collapse_confirm != COLLAPSE_CONFIRM_POINTS else "")
    print(f"<!-- written by: python docs/lab-study/stats.py {args.sweep}{shown} -->\n")
    per_arm_table(runs)
    phenomenon_table(runs)
    contrasts(runs, extra)
    collapse_counts(runs)
    mechanism_table(runs)
    per_run_table(runs)


if __name__ == "__main__":
    main()
