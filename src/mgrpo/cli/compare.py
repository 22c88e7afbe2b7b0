"""`mgrpo compare`: its command line (argparse); the work is done by :mod:`mgrpo.report.compare`."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from mgrpo.report.build import build_report
from mgrpo.report.compare import (
    REPORT_SUBDIR,
    SCALING_FILE,
    Runner,
    check_overrides,
    plan_runs,
    requested_max_steps,
    run_state,
    run_sweep,
    scaling_table,
    subprocess_runner,
    train_command,
)
from mgrpo.report.runs import (
    METRICS_FILE,
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
    parser.add_argument("--presets", required=True, help="comma list, e.g. srt,m-grpo")
    parser.add_argument("--rollouts", default=None, help="comma list of G, e.g. 8,16,32")
    parser.add_argument("--seeds", default=None, help="comma list of seeds, e.g. 0,1")
    parser.add_argument(
        "-o", "--output", default=None, help="sweep directory (default: compare-<recipe name>)"
    )
    parser.add_argument(
        "--fail-fast",
        action="store_true",
        help="stop at the first failed run (default: run the rest, exit 1)",
    )
    parser.add_argument("--dry-run", action="store_true", help="print the commands only")


def run(args: argparse.Namespace, runner: Runner = subprocess_runner) -> int:

    try:
        specs = plan_runs(args.presets, args.rollouts, args.seeds)
        for spec in specs:
            check_overrides(args.overrides, spec)
        requested_max_steps(args.overrides)
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
    outcomes = run_sweep(
        args.recipe, specs, out_dir, args.overrides, runner=runner, fail_fast=args.fail_fast
    )
    done = [
        o.run_dir for o in outcomes if o.returncode == 0 and (o.run_dir / METRICS_FILE).is_file()
    ]
    failed = [o for o in outcomes if o.returncode != 0]
    if not done:
        print("mgrpo compare: no run finished; no report written", file=sys.stderr)
        return 1
    table = scaling_table(done)
    markdown = "## Scaling (rows: method x G)\n\n" + table.to_markdown()
    (out_dir / SCALING_FILE).write_text(markdown, encoding="utf-8")
    result = build_report(
        done,
        out_dir / REPORT_SUBDIR,
        title=f"mgrpo compare: {args.recipe}",
        extra_sections=[("Scaling (rows: method x G)", table.to_html())],
        extra_markdown=markdown,
    )
    print(markdown)
    print(f"wrote {out_dir / SCALING_FILE} and {result.html}")
    for o in failed:
        print(f"mgrpo compare: run {o.run_dir} failed (exit {o.returncode})", file=sys.stderr)
    return 1 if failed else 0
