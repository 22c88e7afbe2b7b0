"""`mgrpo report RUN_DIR [RUN_DIR ...] [-o OUT_DIR]`: plots and a self-contained HTML report.

Reads each run directory (``metrics.jsonl``, ``config.yaml``, ``eval*/results.json``; see
:mod:`mgrpo.report.runs`) and writes to OUT_DIR (default: ``RUN_DIR/report`` for one
run, ``./report`` for several):

- one PNG per plot (:data:`mgrpo.report.plots.PLOT_NAMES`): training reward, validation
  accuracy, policy/momentum entropy, pseudo-label accuracy (when the data has hidden
  answers), vote share, IQR-dropped fraction, response length, loss (pg + KL), step time;
- ``report.html``: summary table (best/final val accuracy, step of best, final entropy,
  alarms, URLVR's Model Collapse Step read from the metrics: :mod:`mgrpo.report.model_collapse`),
  benchmark table (when eval results exist), the plots inline, and the resolved
  configs side by side with their differences highlighted;
- ``summary.md``: the summary (and benchmark) tables as markdown;
- ``samples/``: the sample browser of each run that logged ``samples.jsonl``
  (:mod:`mgrpo.report.samples`), linked from ``report.html``.

The paper's figures are single runs per method; here several runs overlay on the same
axes, named by preset and key settings ("m-grpo G=16 seed=0"). Alarms: if the run logged
``alarm/collapse`` the logged alarms are shown; otherwise the default
:class:`mgrpo.train.logs.alarm.CollapseAlarm` is replayed over the log (marked "replayed").
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from mgrpo.report.html import MISSING, Table, render_report
from mgrpo.report.model_collapse import MCS_THRESHOLD, CollapseReading, model_collapse_step
from mgrpo.report.plots import DEFAULT_MAX_POINTS, DEFAULT_SMOOTHING, make_plots
from mgrpo.report.runs import RunData, load_runs
from mgrpo.report.samples import sample_links
from mgrpo.train.logs.alarm import ALARM_KEY, REASON_KEY, replay

VAL_KEY = "val/accuracy"
ENTROPY_KEY = "entropy/policy"
REWARD_KEY = "reward/mean"
HTML_FILE = "report.html"
MARKDOWN_FILE = "summary.md"
MAX_REASONS_SHOWN = 3


def pct(value: float | None) -> str:
    """Accuracy in [0, 1] as a percentage with one decimal; em dash when unknown."""
    return MISSING if value is None else f"{100.0 * value:.1f}"


def num(value: float | None, digits: int = 3) -> str:
    return MISSING if value is None else f"{value:.{digits}g}"


@dataclass
class RunSummary:
    """Headline numbers of one run (accuracies in [0, 1])."""

    name: str
    steps: int
    last_step: int | None
    best_val: float | None
    best_val_step: int | None
    final_val: float | None
    final_reward: float | None
    final_entropy: float | None
    alarm_steps: int
    alarm_first_step: int | None
    alarm_reasons: list[str] = field(default_factory=list)
    alarm_source: str = "none"  # "logged" | "replayed" | "none"
    model_collapse: CollapseReading | None = None  # URLVR's Model Collapse Step (upper bound)


def summarize_run(run: RunData) -> RunSummary:
    """Best/final val accuracy (best = max; ties -> earliest step), final reward/entropy, alarms."""
    log = run.metrics
    v_steps, v_vals = log.series(VAL_KEY)
    best_val = best_step = final_val = None
    if v_vals.size:
        i = int(v_vals.argmax())
        best_val, best_step, final_val = float(v_vals[i]), int(v_steps[i]), float(v_vals[-1])
    _, rewards = log.series(REWARD_KEY)
    _, entropies = log.series(ENTROPY_KEY)
    summary = RunSummary(
        name=run.name,
        steps=sum(1 for r in log.records if r["step"] >= 1),  # the step-0 row is no step
        last_step=log.last_step,
        best_val=best_val,
        best_val_step=best_step,
        final_val=final_val,
        final_reward=float(rewards[-1]) if rewards.size else None,
        final_entropy=float(entropies[-1]) if entropies.size else None,
        alarm_steps=0,
        alarm_first_step=None,
        model_collapse=model_collapse_step(log),
    )
    if ALARM_KEY in log.keys():
        fired = [r for r in log.records if r.get(ALARM_KEY) in (1, True, 1.0)]
        summary.alarm_source = "logged"
        summary.alarm_steps = len(fired)
        summary.alarm_first_step = fired[0]["step"] if fired else None
        reasons: list[str] = []
        for r in fired:
            reason = r.get(REASON_KEY)
            if isinstance(reason, str) and reason and reason not in reasons:
                reasons.append(reason)
        summary.alarm_reasons = reasons
    else:
        states = replay(log.records)
        summary.alarm_source = "replayed"
        summary.alarm_steps = len(states)
        if states:
            summary.alarm_first_step = states[0].step
            first_reason: dict[str, str] = {}
            for state in states:
                for rule, reason in zip(state.rules, state.reasons, strict=True):
                    first_reason.setdefault(rule, f"{rule} (first at step {state.step}): {reason}")
            summary.alarm_reasons = list(first_reason.values())
    return summary


def summary_table(summaries: Sequence[RunSummary]) -> tuple[Table, set[tuple[int, int]]]:
    """The summary table and the cells to highlight as alarms."""
    headers = [
        "run",
        "steps",
        "best val acc (%)",
        "step of best",
        "val acc at the last validation (%)",
        "reward at the last step",
        "entropy at the last step",
        "collapse alarm (online warning)",
        f"model collapse step (URLVR: reward accuracy < {MCS_THRESHOLD:g})",
    ]
    alarm_column = len(headers) - 2
    rows, alarm_cells = [], set()
    for i, s in enumerate(summaries):
        if s.alarm_steps:
            shown = s.alarm_reasons[:MAX_REASONS_SHOWN]
            more = len(s.alarm_reasons) - len(shown)
            alarm = (
                f"{s.alarm_steps} step(s) from step {s.alarm_first_step} [{s.alarm_source}]: "
                + " | ".join(shown)
                + (f" (+{more} more)" if more > 0 else "")
            )
            alarm_cells.add((i, alarm_column))
        else:
            alarm = f"none [{s.alarm_source}]" if s.alarm_source != "none" else "none"
        rows.append(
            [
                s.name,
                str(s.steps),
                pct(s.best_val),
                MISSING if s.best_val_step is None else str(s.best_val_step),
                pct(s.final_val),
                num(s.final_reward),
                num(s.final_entropy),
                alarm,
                MISSING if s.model_collapse is None else s.model_collapse.describe(),
            ]
        )
    return Table(headers, rows), alarm_cells


def benchmark_table(runs: Sequence[RunData]) -> Table | None:
    """Rows (run, eval dir), columns benchmarks, cells headline metric in %; None without evals."""
    benches: list[str] = []
    for run in runs:
        for ev in run.evals:
            benches += [b for b in ev.benchmarks if b not in benches]
    if not benches:
        return None
    rows = []
    for run in runs:
        for ev in run.evals:
            row = [run.name, ev.name]
            for bench in benches:
                primary = ev.primary(bench)
                row.append(MISSING if primary is None else f"{pct(primary[1])} ({primary[0]})")
            rows.append(row)
    return Table(["run", "eval", *[f"{b} (%)" for b in benches]], rows)


@dataclass
class ReportResult:
    out_dir: Path
    html: Path
    markdown: Path
    plots: dict[str, Path]
    summaries: list[RunSummary]
    notes: list[str]
    seconds: float


def build_report(
    run_dirs: Sequence[str | Path],
    out_dir: str | Path,
    *,
    title: str | None = None,
    smoothing: float = DEFAULT_SMOOTHING,
    max_points: int = DEFAULT_MAX_POINTS,
    lenient: bool = False,
    plots: Sequence[str] | None = None,
    extra_sections: Sequence[tuple[str, str]] = (),
    extra_markdown: str = "",
) -> ReportResult:
    """Read the runs, write plots + ``report.html`` + ``summary.md`` into ``out_dir``."""
    if not run_dirs:
        raise ValueError("build_report: at least one run directory is required")
    start = time.perf_counter()
    runs = load_runs(list(run_dirs), lenient=lenient)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    summaries = [summarize_run(run) for run in runs]
    alarm_steps = {s.name: s.alarm_first_step for s in summaries}
    plot_paths = make_plots(
        runs, out, smoothing=smoothing, max_points=max_points, alarm_steps=alarm_steps, only=plots
    )
    table, alarm_cells = summary_table(summaries)
    bench = benchmark_table(runs)
    notes = [w for run in runs for w in run.warnings]
    title = title or ("mgrpo report: " + ", ".join(run.name for run in runs))
    page = render_report(
        title=title,
        summary=table,
        alarm_cells=alarm_cells,
        plots=plot_paths,
        names=[run.name for run in runs],
        flat_configs=[run.flat_config for run in runs],
        benchmark=bench,
        extra_sections=[*extra_sections, *sample_links(runs, out)],
        notes=notes,
    )
    html_path = out / HTML_FILE
    html_path.write_text(page, encoding="utf-8")
    md = [f"# {title}\n", "## Summary\n", table.to_markdown()]
    if extra_markdown:
        md.append(extra_markdown)
    if bench is not None:
        md += ["\n## Benchmarks\n", bench.to_markdown()]
    md_path = out / MARKDOWN_FILE
    md_path.write_text("\n".join(md), encoding="utf-8")
    return ReportResult(
        out, html_path, md_path, plot_paths, summaries, notes, time.perf_counter() - start
    )
