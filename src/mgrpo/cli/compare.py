"""`mgrpo compare`: its command line (argparse); the work is done by :mod:`mgrpo.report.compare`
and :mod:`mgrpo.report.sweep`."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from mgrpo.report.arms import COLLAPSE_CONFIRM_POINTS, DEFAULT_COLLAPSE_DROP
from mgrpo.report.compare import (
    PLOTS_SUBDIR,
    REPORT_SUBDIR,
    SUMMARY_JSON,
    SUMMARY_MD,
    write_aggregate,
    write_stats,
)
from mgrpo.report.contrasts import Family, load_families
from mgrpo.report.runs import METRICS_FILE
from mgrpo.report.sweep import (
    CompareOutcome,
    Runner,
    check_overrides,
    plan_runs,
    requested_max_steps,
    run_state,
    run_sweep,
    subprocess_runner,
    train_command,
)

#: mgrpo.cli parses this command with parse_intermixed_args: the key=value overrides come
#: after the options, which plain parse_args rejects once '*' matched nothing before them
INTERMIXED_ARGS = True

def configure_parser(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("recipe", metavar="RECIPE", help="recipe name or YAML path")
    parser.add_argument(
        "overrides",
        nargs="*",
        metavar="KEY=VALUE",
        help="extra dotted overrides passed to every run",
    )
    parser.add_argument("--presets", default=None, help="comma list, e.g. srt,m-grpo")
    parser.add_argument(
        "--arm",
        action="append",
        default=[],
        metavar="NAME=PRESET[:K=V,...]",
        help="an arm: a preset plus overrides, e.g. no-iqr=m-grpo:algorithm.iqr_k=null "
        "(repeatable; a list value keeps its commas: algorithm.teacher_alpha=[0.01,0.01])",
    )
    parser.add_argument("--rollouts", default=None, help="comma list of G, e.g. 8,16,32")
    parser.add_argument("--seeds", default=None, help="comma list or range of seeds, e.g. 0-4")
    parser.add_argument(
        "--jobs", type=int, default=1, help="runs side by side (1 thread or 1 GPU each)"
    )
    parser.add_argument(
        "-o", "--output", default=None, help="sweep directory (default: compare-<recipe name>)"
    )
    parser.add_argument(
        "--collapse-drop",
        type=float,
        default=None,
        help="collapse criterion: accuracy points (as a fraction) below the best, default 0.10",
    )
    parser.add_argument(
        "--collapse-confirm",
        type=int,
        default=COLLAPSE_CONFIRM_POINTS,
        metavar="N",
        help="collapse criterion: later validation points that must stay below, default "
        f"{COLLAPSE_CONFIRM_POINTS} (a drop on the last N points is not a collapse)",
    )
    parser.add_argument(
        "--baseline", default=None, metavar="ARM",
        help="the declared reference arm: also write stats.md, every arm against it paired by "
        "seed (t and bootstrap intervals, Holm, Fisher on collapse counts; "
        "mgrpo.report.contrasts)",
    )
    parser.add_argument(
        "--pair", action="append", default=[], metavar="ARM:BASE",
        help="with --baseline: one more paired contrast, ARM minus BASE (repeatable)",
    )
    parser.add_argument(
        "--family", default=None, metavar="FILE",
        help="with --baseline: a YAML file of contrast families declared before the runs, "
        "each Holm-corrected within itself (families: [{name, outcome, contrasts: {name: "
        "'0.5*a + 0.5*b - c'}}])",
    )
    parser.add_argument(
        "--report-only", action="store_true", help="aggregate the finished runs; train nothing"
    )
    parser.add_argument(
        "--report-to", default=None, help="directory for summary/plots (default: the sweep's)"
    )
    parser.add_argument(
        "--no-html", action="store_true", help="skip report/report.html (every run overlaid)"
    )
    parser.add_argument(
        "--replay-alarm",
        action="store_true",
        help="score the collapse alarm by replaying the default thresholds over each log",
    )
    parser.add_argument(
        "--fail-fast",
        action="store_true",
        help="stop at the first failed run (default: run the rest, exit 1)",
    )
    parser.add_argument("--dry-run", action="store_true", help="print the commands only")


def run(args: argparse.Namespace, runner: Runner = subprocess_runner) -> int:
    try:
        specs = plan_runs(args.presets, args.rollouts, args.seeds, args.arm)
        for spec in specs:
            check_overrides(args.overrides, spec)
        requested_max_steps(args.overrides)
        if args.jobs < 1:
            raise ValueError(f"--jobs must be >= 1, got {args.jobs}")
        drop = DEFAULT_COLLAPSE_DROP if args.collapse_drop is None else args.collapse_drop
        if not 0.0 < drop < 1.0:
            raise ValueError(f"--collapse-drop must be in (0, 1), got {drop}")
        if args.collapse_confirm < 0:
            raise ValueError(f"--collapse-confirm must be >= 0, got {args.collapse_confirm}")
        pairs, families = _declared(args, specs)
    except ValueError as exc:
        print(f"mgrpo compare: error: {exc}", file=sys.stderr)
        return 2
    out_dir = Path(args.output or f"compare-{Path(args.recipe).stem}")
    if args.dry_run:
        for spec in specs:
            run_dir = out_dir / spec.dirname
            resume = run_state(run_dir, requested_max_steps(args.overrides)) == "resumable"
            print(
                " ".join(train_command(args.recipe, run_dir, spec, args.overrides, resume=resume))
            )
        return 0
    if args.report_only:
        want = requested_max_steps(args.overrides)
        done = [out_dir / s.dirname for s in specs
                if run_state(out_dir / s.dirname, want) == "complete"]
        failed: list[CompareOutcome] = []
        missing = [s.dirname for s in specs if out_dir / s.dirname not in done]
        if missing:
            print(f"mgrpo compare: not complete, left out: {', '.join(missing)}", file=sys.stderr)
    else:
        outcomes = run_sweep(
            args.recipe, specs, out_dir, args.overrides, runner=runner,
            fail_fast=args.fail_fast, jobs=args.jobs,
        )
        done = [
            o.run_dir for o in outcomes
            if o.returncode == 0 and (o.run_dir / METRICS_FILE).is_file()
        ]
        failed = [o for o in outcomes if o.returncode != 0]
    if not done:
        print("mgrpo compare: no run finished; no report written", file=sys.stderr)
        return 1
    report_dir = Path(args.report_to) if args.report_to else out_dir
    summary = write_aggregate(
        specs, done, report_dir, title=f"mgrpo compare: {args.recipe}", drop=drop,
        confirm=args.collapse_confirm,
        html=not args.no_html, replay_alarm=args.replay_alarm,
    )
    print(summary)
    html = "" if args.no_html else f" and {report_dir / REPORT_SUBDIR / 'report.html'}"
    print(f"wrote {report_dir / SUMMARY_MD}, {report_dir / SUMMARY_JSON}, "
          f"{report_dir / PLOTS_SUBDIR}/{html}")
    if args.baseline:
        try:
            path = write_stats(specs, done, report_dir, baseline=args.baseline, pairs=pairs,
                               families=families, confirm=args.collapse_confirm)
            print(f"wrote {path}")
        except ValueError as exc:
            print(f"mgrpo compare: error: {exc}", file=sys.stderr)
            return 1
    for o in failed:
        print(f"mgrpo compare: run {o.run_dir} failed (exit {o.returncode})", file=sys.stderr)
    return 1 if failed else 0


def _declared(args: argparse.Namespace, specs: list) -> tuple[list[tuple[str, str]],
                                                               list[Family]]:
    """--pair and --family, checked against the planned arms before anything runs."""
    arms = list(dict.fromkeys(s.group for s in specs))
    if (args.pair or args.family) and not args.baseline:
        raise ValueError("--pair and --family need --baseline (the declared reference arm)")
    if args.baseline and args.baseline not in arms:
        raise ValueError(f"--baseline {args.baseline}: not an arm of this sweep "
                         f"(arms: {', '.join(arms)})")
    pairs = []
    for text in args.pair:
        arm, sep, base = text.partition(":")
        if not sep or arm not in arms or base not in arms:
            raise ValueError(f"--pair {text!r}: expected ARM:BASE, two arms of this sweep "
                             f"(arms: {', '.join(arms)})")
        pairs.append((arm, base))
    families = load_families(args.family) if args.family else []
    for family in families:
        for contrast in family.contrasts:
            unknown = [arm for arm, _ in contrast.weights if arm not in arms]
            if unknown:
                raise ValueError(f"--family {args.family}: {family.name}: contrast "
                                 f"{contrast.name!r} names {', '.join(unknown)}, not an arm "
                                 f"of this sweep (arms: {', '.join(arms)})")
    return pairs, families

