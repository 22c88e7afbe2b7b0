"""The work behind `mgrpo compare RECIPE --presets srt,m-grpo [--arm NAME=PRESET:k=v,...] [--rollouts 8,16]
[--seeds 0-4] [--jobs N] [-o DIR]`.

Runs the same recipe under every arm x G x seed, each as a normal ``mgrpo train``
subprocess into its own run directory::

    python -m mgrpo train RECIPE -o DIR/<arm>-G<g>-s<seed> [--resume] \\
        algorithm.preset=P algorithm.rollouts=G seed=S trainer.run_name=<arm>-G<g>-s<seed> \\
        [extra key=value ...] [arm key=value ...]

An *arm* is a preset plus overrides: ``--presets srt,m-grpo`` gives the arms ``srt`` and
``m-grpo``; ``--arm no-iqr=m-grpo:algorithm.iqr_k=null`` adds an arm named ``no-iqr`` (the
name is its directory prefix; overrides are comma-separated ``key=value``, so a value cannot
contain a comma). An arm's overrides come last on the command line, so they win over the
extra overrides given to every run.

``--jobs N`` runs N trainings side by side. On a CPU machine each gets one thread
(``trainer.threads=1`` and ``OMP_NUM_THREADS=1``, placed before the user's overrides so those
win); with GPUs each job slot gets its own device through ``CUDA_VISIBLE_DEVICES`` (slot k ->
the k-th visible device, modulo their number). With N > 1 each run's output goes to
``DIR/logs/<run>.log`` instead of the terminal. Before the first job starts, every lab model
the runs load (``model.name`` ``lab`` or ``lab:NAME``) is built once in the parent (not once
per job). Each run gets ``trainer.run_name=<its directory name>`` (before the user's
overrides), so the report's curves and rows name it by arm, e.g. ``m-grpo-N8-s0``.

Afterwards it writes one report over all runs (``DIR/report/``), a scaling table in the layout
of the paper's Tables 1 and 3 (``DIR/scaling.md``) and the seed aggregation of
:mod:`mgrpo.report.arms`: ``DIR/summary.md`` and ``DIR/summary.json`` (per arm: best and
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

import json
from collections.abc import Sequence
from html import escape
from pathlib import Path

from mgrpo.report.arms import (
    COLLAPSE_CONFIRM_POINTS,
    END_WINDOW,
    Stat,
    arm_table,
    mechanism_table,
    paired_table,
    plot_bands,
    seed_table,
    summarize_arm,
)
from mgrpo.report.arms import summary_json as seeds_json
from mgrpo.report.build import build_report
from mgrpo.report.contrasts import Family, RunOutcome, run_outcome, study_tables
from mgrpo.report.html import MISSING, Table
from mgrpo.report.runs import load_run, load_runs
from mgrpo.report.sweep import (
    PRESET_KEY,
    ROLLOUTS_KEY,
    Arm,
    CompareOutcome,
    Launch,
    RunSpec,
    check_overrides,
    parse_arm,
    plan_runs,
    run_state,
    run_sweep,
    train_command,
    visible_gpus,
)

__all__ = [
    "Arm",
    "CompareOutcome",
    "Launch",
    "RunSpec",
    "check_overrides",
    "parse_arm",
    "plan_runs",
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
STATS_MD = "stats.md"
SUMMARY_JSON = "summary.json"
VAL_KEY = "val/accuracy"

def _mean_std(values: list[float]) -> str:
    """Percent mean ± sample std over seeds (the mean alone for one value, a dash for none)."""
    return Stat(values).fmt(100.0)


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


def verdict_note(drop: float, confirm: int = COLLAPSE_CONFIRM_POINTS) -> str:
    """What `collapsed` and `alarm fired` each mean, printed under the per-arm table."""
    return (
        f"`collapsed` is the verdict, read from validation accuracy once the run is over: a "
        f"drop of {100 * drop:g} points or more below the best so far that holds at every later "
        f"validation point (at least {confirm} of them) while the training "
        "reward has risen (`mgrpo.report.arms.collapse_step`). `alarm fired` is the trainer's "
        "online, label-free warning (`mgrpo.train.logs.alarm`: entropy or response length "
        "collapsing, or validation accuracy falling while the reward rises, each held for a "
        "few steps), raised while the run trains; it can fire on a dip that later recovers, "
        "so an arm may show an alarm and no collapse. The alarm never decides the verdict. "
        f"Entropy, reward and vote share are each run's mean over its last {END_WINDOW} "
        "steps, then mean ± std over seeds.\n"
    )


def write_aggregate(
    specs: Sequence[RunSpec],
    done: Sequence[Path],
    out_dir: Path,
    *,
    title: str,
    drop: float,
    confirm: int = COLLAPSE_CONFIRM_POINTS,
    html: bool = True,
    replay_alarm: bool = False,
) -> str:
    """Scaling table, seed summary (markdown + JSON), mean-and-band plots, HTML report.

    Returns the markdown written to ``out_dir/summary.md``."""
    out_dir.mkdir(parents=True, exist_ok=True)
    spec_of = {Path(d): s for s in specs for d in done if Path(d).name == s.dirname}
    runs = load_runs(list(done), lenient=True)
    groups: dict[str, list] = {}
    for run in runs:
        groups.setdefault(spec_of[run.path].group, []).append(run)
    arms = [
        summarize_arm(name, rs, drop=drop, confirm=confirm, replay_alarm=replay_alarm)
        for name, rs in groups.items()
    ]
    table = scaling_table(list(done), {d: spec_of[Path(d)].arm_name for d in done})
    scaling = "## Scaling (rows: arm x G)\n\n" + table.to_markdown()
    (out_dir / SCALING_FILE).write_text(scaling, encoding="utf-8")
    paired = paired_table(arms)
    summary = (
        f"## Per arm, over seeds (mean ± std; collapsed = val accuracy >= {100 * drop:g} points "
        f"below its best and staying there for >= {confirm} later validation points, with "
        "reward up)\n\n"
        + arm_table(arms).to_markdown()
        + "\n" + verdict_note(drop, confirm) + "\n"
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
                ("Per arm over seeds", arm_table(arms).to_html()
                 + f"<p>{escape(verdict_note(drop, confirm))}</p>"),
                ("Scaling (rows: arm x G)", table.to_html()),
            ],
            extra_markdown=summary + "\n" + scaling,
        )
    return summary


def write_stats(specs: Sequence[RunSpec], done: Sequence[Path], out_dir: Path, *, baseline: str,
                pairs: Sequence[tuple[str, str]] = (), families: Sequence[Family] = (),
                confirm: int = COLLAPSE_CONFIRM_POINTS) -> Path:
    """The tables of :mod:`mgrpo.report.contrasts` over the finished runs, grouped by arm (and
    G) in the order of `specs`, against `baseline`; written to ``out_dir/stats.md``. Runs with
    fewer than two validation points are left out (they have no outcome)."""
    spec_of = {Path(d): s for s in specs for d in done if Path(d).name == s.dirname}
    order = list(dict.fromkeys(s.group for s in specs))
    runs: dict[str, dict[int, RunOutcome]] = {}
    for path in done:
        spec = spec_of[Path(path)]
        log = load_run(path, lenient=True).metrics
        if log.series("val/accuracy")[1].size < 2:
            continue
        runs.setdefault(spec.group, {})[spec.seed or 0] = run_outcome(log, confirm)
    runs = {arm: runs[arm] for arm in order if arm in runs}
    if baseline not in runs:
        raise ValueError(f"--baseline {baseline}: no finished run of that arm "
                         f"(finished: {', '.join(runs) or 'none'})")
    header = (f"<!-- written by mgrpo compare --baseline {baseline}; collapse confirmed by "
              f"{confirm} later validation points -->\n\n")
    path = out_dir / STATS_MD
    out_dir.mkdir(parents=True, exist_ok=True)
    path.write_text(header + study_tables(runs, baseline, pairs, families), encoding="utf-8")
    return path

