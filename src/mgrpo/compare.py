"""`mgrpo compare RECIPE --presets srt,m-grpo [--arm NAME=PRESET:k=v,...] [--rollouts 8,16]
[--seeds 0-4] [--jobs N] [-o DIR]`.

Runs the same recipe under every arm x G x seed, each as a normal ``mgrpo train``
subprocess into its own run directory::

    python -m mgrpo train RECIPE -o DIR/<arm>-G<g>-s<seed> [--resume] \\
        algorithm.preset=P algorithm.rollouts=G seed=S [extra key=value ...] [arm key=value ...]

An *arm* is a preset plus overrides: ``--presets srt,m-grpo`` gives the arms ``srt`` and
``m-grpo``; ``--arm no-iqr=m-grpo:algorithm.iqr_k=null`` adds an arm named ``no-iqr`` (the
name is its directory prefix; overrides are comma-separated ``key=value``, so a value cannot
contain a comma). An arm's overrides come last on the command line, so they win over the
extra overrides given to every run.

``--jobs N`` runs N trainings side by side. On a CPU machine each gets one thread
(``trainer.threads=1`` and ``OMP_NUM_THREADS=1``, placed before the user's overrides so those
win); with GPUs each job slot gets its own device through ``CUDA_VISIBLE_DEVICES`` (slot k ->
the k-th visible device, modulo their number). With N > 1 each run's output goes to
``DIR/logs/<run>.log`` instead of the terminal.

Afterwards it writes one report over all runs (``DIR/report/``), a scaling table in the layout
of the paper's Tables 1 and 3 (``DIR/scaling.md``) and the seed aggregation of
:mod:`mgrpo.reporting.seeds`: ``DIR/summary.md`` and ``DIR/summary.json`` (per arm: best and
final validation accuracy mean ± std, collapse rate and step, end-of-run entropy) and
``DIR/plots/*.png`` (curves as the mean over seeds with a ± 1 std band). ``--report-only``
aggregates the runs already present without training; ``--report-to`` writes the
aggregation elsewhere (e.g. a subset of arms); ``--no-html`` skips ``report.html``;
``--replay-alarm`` scores the collapse alarm by replaying its current default thresholds over
each log instead of reading the logged ``alarm/collapse``.

Every run directory keeps its resolved ``config.yaml`` next to its ``metrics.jsonl``.

Sweep dimensions left out are not overridden (the recipe's value is used) and drop out
of the directory name: ``--presets srt`` alone gives ``DIR/srt``.

Restarts: a run whose ``metrics.jsonl`` already reaches ``trainer.max_steps`` (from its
resolved ``config.yaml``) is skipped; an incomplete run with a checkpoint is continued
with ``--resume``; an incomplete run without one is moved aside to
``<dir>.incomplete-<k>`` (never deleted) and started afresh. Re-running the same command
therefore finishes a half-done sweep.

Departure from the paper: with several seeds the tables show mean ± std over seeds
(the paper reports single runs).
"""

from __future__ import annotations

import argparse
import statistics
import sys
from collections.abc import Sequence
from pathlib import Path

from mgrpo.reporting.html import MISSING, Table
from mgrpo.reporting.runs import METRICS_FILE, load_run
from mgrpo.sweep import (
    PRESET_KEY,
    ROLLOUTS_KEY,
    Arm,
    CompareOutcome,
    Launch,
    Runner,
    RunSpec,
    check_overrides,
    parse_arm,
    plan_runs,
    requested_max_steps,
    run_state,
    run_sweep,
    subprocess_runner,
    train_command,
    visible_gpus,
)

__all__ = [
    "Arm",
    "CompareOutcome",
    "Launch",
    "RunSpec",
    "check_overrides",
    "configure_parser",
    "parse_arm",
    "plan_runs",
    "run",
    "run_state",
    "run_sweep",
    "scaling_table",
    "train_command",
    "visible_gpus",
    "write_aggregate",
]

REPORT_SUBDIR = "report"
PLOTS_SUBDIR = "plots"
SCALING_FILE = "scaling.md"
SUMMARY_MD = "summary.md"
SUMMARY_JSON = "summary.json"
VAL_KEY = "val/accuracy"

#: mgrpo.cli parses this command with parse_intermixed_args: the key=value overrides come
#: after the options, which plain parse_args rejects once '*' matched nothing before them
INTERMIXED_ARGS = True


def _mean_std(values: list[float]) -> str:
    if not values:
        return MISSING
    mean = 100.0 * statistics.fmean(values)
    if len(values) == 1:
        return f"{mean:.1f}"
    return f"{mean:.1f} ± {100.0 * statistics.stdev(values):.1f}"


def scaling_table(run_dirs: Sequence[Path], arm_of: dict[Path, str] | None = None) -> Table:
    """Paper Tables 1/3 layout: rows arm x G (seeds pooled), accuracy columns in %.

    The arm of a run is ``arm_of[path]`` when given, else its preset.

    Columns: val accuracy at its best (the step-0 validation included) and at the final
    validation step, then one column per
    benchmark found in the runs' eval results (headline metric, e.g. avg@k). Cells are the
    mean over seeds (± std when several), em dash when no run of the row has the value.
    """
    rows: dict[tuple[str, str], dict[str, list[float]]] = {}
    benches: list[str] = []
    for path in run_dirs:
        run = load_run(path, lenient=True)
        flat = run.flat_config
        name = (arm_of or {}).get(path) or str(flat.get(PRESET_KEY, path.name))
        key = (name, str(flat.get(ROLLOUTS_KEY, MISSING)))
        cells = rows.setdefault(key, {})
        _, vals = run.metrics.series(VAL_KEY)
        if vals.size:
            cells.setdefault("best", []).append(float(vals.max()))
            cells.setdefault("final", []).append(float(vals[-1]))
        cells.setdefault("n", []).append(1.0)
        if run.evals:
            ev = run.evals[-1]  # the latest eval directory in sorted order
            for bench in ev.benchmarks:
                primary = ev.primary(bench)
                if primary is not None:
                    if bench not in benches:
                        benches.append(bench)
                    cells.setdefault(f"bench:{bench}", []).append(primary[1])
    headers = ["method", "G", "runs", "val acc best (%)", "val acc final (%)"]
    headers += [f"{b} (%)" for b in benches]
    table_rows = []
    for (preset, g), cells in rows.items():
        row = [
            preset,
            g,
            str(len(cells.get("n", []))),
            _mean_std(cells.get("best", [])),
            _mean_std(cells.get("final", [])),
        ]
        row += [_mean_std(cells.get(f"bench:{b}", [])) for b in benches]
        table_rows.append(row)
    return Table(headers, table_rows)


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
        "(repeatable)",
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
        help="score the collapse alarm by replaying today's default thresholds over each log",
    )
    parser.add_argument(
        "--fail-fast",
        action="store_true",
        help="stop at the first failed run (default: run the rest, exit 1)",
    )
    parser.add_argument("--dry-run", action="store_true", help="print the commands only")


def write_aggregate(
    specs: Sequence[RunSpec],
    done: Sequence[Path],
    out_dir: Path,
    *,
    title: str,
    drop: float,
    html: bool = True,
    replay_alarm: bool = False,
) -> str:
    """Scaling table, seed summary (markdown + JSON), mean-and-band plots, HTML report.

    Returns the markdown written to ``out_dir/summary.md``."""
    import json

    from mgrpo.report import build_report
    from mgrpo.reporting.runs import load_runs
    from mgrpo.reporting.seeds import (
        arm_table,
        mechanism_table,
        paired_table,
        plot_bands,
        seed_table,
        summarize_arm,
    )
    from mgrpo.reporting.seeds import summary_json as seeds_json

    out_dir.mkdir(parents=True, exist_ok=True)
    spec_of = {Path(d): s for s in specs for d in done if Path(d).name == s.dirname}
    runs = load_runs(list(done), lenient=True)
    groups: dict[str, list] = {}
    for run in runs:
        groups.setdefault(spec_of[run.path].group, []).append(run)
    arms = [
        summarize_arm(name, rs, drop=drop, replay_alarm=replay_alarm)
        for name, rs in groups.items()
    ]
    table = scaling_table(list(done), {d: spec_of[Path(d)].arm_name for d in done})
    scaling = "## Scaling (rows: arm x G)\n\n" + table.to_markdown()
    (out_dir / SCALING_FILE).write_text(scaling, encoding="utf-8")
    paired = paired_table(arms)
    summary = (
        f"## Per arm, over seeds (mean ± std; collapsed = val accuracy >= {100 * drop:g} points "
        "below its best and staying there, with reward up)\n\n"
        + arm_table(arms).to_markdown()
        + (f"\n## Paired by seed, against {arms[0].arm}\n\n" + paired.to_markdown()
           if paired is not None else "")
        + "\n## What the vote did (first -> last 10 steps, mean over seeds; IQR and drift: mean ± std)\n\n"
        + mechanism_table(arms).to_markdown()
        + "\n## Per run\n\n"
        + seed_table(arms).to_markdown()
    )
    (out_dir / SUMMARY_MD).write_text(summary, encoding="utf-8")
    (out_dir / SUMMARY_JSON).write_text(
        json.dumps(seeds_json(arms, drop), indent=1) + "\n", encoding="utf-8"
    )
    plot_bands(groups, out_dir / PLOTS_SUBDIR)
    if html:
        build_report(
            list(done),
            out_dir / REPORT_SUBDIR,
            title=title,
            extra_sections=[
                ("Per arm over seeds", arm_table(arms).to_html()),
                ("Scaling (rows: arm x G)", table.to_html()),
            ],
            extra_markdown=summary + "\n" + scaling,
        )
    return summary


def run(args: argparse.Namespace, runner: Runner = subprocess_runner) -> int:
    from mgrpo.reporting.seeds import DEFAULT_COLLAPSE_DROP

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
        html=not args.no_html, replay_alarm=args.replay_alarm,
    )
    print(summary)
    html = "" if args.no_html else f" and {report_dir / REPORT_SUBDIR / 'report.html'}"
    print(f"wrote {report_dir / SUMMARY_MD}, {report_dir / SUMMARY_JSON}, "
          f"{report_dir / PLOTS_SUBDIR}/{html}")
    for o in failed:
        print(f"mgrpo compare: run {o.run_dir} failed (exit {o.returncode})", file=sys.stderr)
    return 1 if failed else 0
