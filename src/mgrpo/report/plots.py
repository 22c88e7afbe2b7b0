"""PNG plots of one or more runs' metrics (matplotlib, Agg canvas, imported lazily).

Each plot overlays every run on the same axes, colour = run, line style = metric (e.g.
solid policy entropy, dashed momentum entropy). Dense per-step series are drawn twice: a
faint raw line and a debiased EMA-smoothed line (TensorBoard's smoothing). Sparse series
(``val/accuracy``) are drawn as lines with markers, unsmoothed. The first step on which a
run's collapse alarm fired is marked with a dotted vertical line in the run's colour.

Long runs are subsampled to at most ``max_points`` points per line *after* smoothing, so
a 100k-step log plots as fast as a 1k-step one and the smoothed curve is exact.

Figures are built with ``matplotlib.figure.Figure`` and an Agg canvas, never pyplot, so no
global backend is switched and no figure registry leaks memory.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from mgrpo.report.runs import RunData

DEFAULT_SMOOTHING = 0.9
DEFAULT_MAX_POINTS = 2000
FIGSIZE = (7.0, 4.0)  # inches
WIDE_FIGSIZE = (11.0, 4.0)
DPI = 100
RAW_ALPHA = 0.25
TIME_PREFIX = "time/"
TIME_TOTAL_KEY = "time/step"
STYLES = ("-", "--", ":", "-.")
STAGE_PALETTE = "Set2"
MARGINS = {"left": 0.1, "right": 0.97, "bottom": 0.12, "top": 0.9, "wspace": 0.2}


@dataclass(frozen=True)
class PlotSpec:
    """One line plot: file stem, title, (metric key, legend label) pairs, y label."""

    name: str
    title: str
    keys: tuple[tuple[str, str], ...]
    ylabel: str
    sparse: bool = False  # True: markers, no smoothing (validation points)


LINE_PLOTS: tuple[PlotSpec, ...] = (
    PlotSpec("reward", "Training reward", (("reward/mean", "reward"),), "mean reward"),
    PlotSpec(
        "val_accuracy", "Validation accuracy", (("val/accuracy", "val"),), "accuracy", sparse=True
    ),
    PlotSpec(
        "entropy",
        "Trajectory entropy",
        (("entropy/policy", "policy"), ("entropy/momentum", "momentum")),
        "mean token entropy (nats)",
    ),
    PlotSpec(
        "label_accuracy",
        "Pseudo-label accuracy vs hidden labels",
        (("label/accuracy", "majority-vote label"), ("policy/accuracy", "policy rollouts")),
        "accuracy",
    ),
    PlotSpec("vote_share", "Majority-vote share", (("label/vote_share", "vote share"),), "share"),
    PlotSpec(
        "iqr_dropped",
        "IQR-filtered (dropped) fraction",
        (("filter/dropped_fraction", "dropped"),),
        "fraction of rollouts",
    ),
    PlotSpec(
        "response_length",
        "Response length",
        (("response/length_mean", "mean length"),),
        "tokens",
    ),
)
LOSS_KEYS = (("loss/pg", "policy-gradient loss"), ("loss/kl", "KL to reference"))
PLOT_NAMES = tuple(p.name for p in LINE_PLOTS) + ("loss", "step_time")


def ema_smooth(values: np.ndarray, weight: float) -> np.ndarray:
    """Debiased EMA: ``s_t = w s_{t-1} + (1-w) x_t``, ``out_t = s_t / (1 - w^t)`` (s_0 = 0).

    weight 0 returns the input; the debiasing makes the first point equal the first value.
    """
    if not 0.0 <= weight < 1.0:
        raise ValueError(f"smoothing weight must be in [0, 1), got {weight}")
    values = np.asarray(values, dtype=np.float64)
    if weight == 0.0 or values.size == 0:
        return values.copy()
    out = np.empty_like(values)
    last = 0.0
    scale = 1.0
    for i, v in enumerate(values):
        last = weight * last + (1.0 - weight) * v
        scale *= weight
        out[i] = last / (1.0 - scale)
    return out


def _subsample(n: int, max_points: int) -> np.ndarray | slice:
    if n <= max_points:
        return slice(None)
    return np.unique(np.linspace(0, n - 1, max_points).round().astype(np.int64))


def _new_figure(figsize: tuple[float, float] = FIGSIZE, ncols: int = 1):
    # lazy, start-up: only plotting needs matplotlib
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=figsize, dpi=DPI)
    FigureCanvasAgg(fig)
    axes = [fig.add_subplot(1, ncols, i + 1) for i in range(ncols)]
    return fig, axes


def _colors(n: int, palette: str | None = None) -> list:
    """Run colours (tab10/tab20) or, with ``palette``, another qualitative colormap."""
    # lazy, start-up: only plotting needs matplotlib
    from matplotlib import colormaps

    cmap = colormaps[palette or ("tab10" if n <= 10 else "tab20")]
    return [cmap(i % cmap.N) for i in range(n)]


def _draw_series(
    ax,
    run: RunData,
    key: str,
    color,
    style: str,
    spec_sparse: bool,
    smoothing: float,
    max_points: int,
) -> bool:
    steps, values = run.metrics.series(key)
    if steps.size == 0:
        return False
    if spec_sparse or steps.size < 3:
        idx = _subsample(steps.size, max_points)
        ax.plot(steps[idx], values[idx], style, color=color, marker="o", markersize=3, lw=1.5)
        return True
    smooth = ema_smooth(values, smoothing)
    idx = _subsample(steps.size, max_points)
    ax.plot(steps[idx], values[idx], style, color=color, alpha=RAW_ALPHA, lw=0.8)
    ax.plot(steps[idx], smooth[idx], style, color=color, lw=1.6)
    return True


def _finish(fig, ax_list, path: Path, title: str, *, tight: bool = False) -> Path:
    """Grid, title, layout, save. Fixed margins unless ``tight``: tight_layout costs a full
    extra draw per figure (a third of the report's time), so only the figure with long
    tick labels (run names on the step-time bars) uses it."""
    for ax in ax_list:
        ax.grid(True, alpha=0.3)
    fig.suptitle(title)
    if tight:
        fig.tight_layout()
    else:
        fig.subplots_adjust(**MARGINS)
    fig.savefig(path, dpi=DPI)
    return path


def _legend(ax, runs: Sequence[RunData], colors, key_labels: list[tuple[str, str]]) -> None:
    # lazy, start-up: only plotting needs matplotlib
    from matplotlib.lines import Line2D

    handles = [
        Line2D([], [], color=c, lw=2, label=r.name) for r, c in zip(runs, colors, strict=True)
    ]
    if len(key_labels) > 1:
        handles += [Line2D([], [], color="0.3", ls=s, label=lab) for lab, s in key_labels]
    ax.legend(handles=handles, fontsize=7, loc="best", framealpha=0.7)


def _mark_alarms(ax, runs: Sequence[RunData], colors, alarm_steps: dict[str, int | None]) -> None:
    for run, color in zip(runs, colors, strict=True):
        step = alarm_steps.get(run.name)
        if step is not None:
            ax.axvline(step, color=color, ls=":", lw=1.2, alpha=0.9)


def plot_line(
    spec: PlotSpec,
    runs: Sequence[RunData],
    out_dir: Path,
    *,
    smoothing: float,
    max_points: int,
    alarm_steps: dict[str, int | None],
) -> Path | None:
    """One overlay line plot; None when no run logs any of the spec's keys."""
    if not any(run.metrics.has(key) for run in runs for key, _ in spec.keys):
        return None
    colors = _colors(len(runs))
    fig, (ax,) = _new_figure()
    used: list[tuple[str, str]] = []
    for (key, label), style in zip(spec.keys, STYLES, strict=False):
        drawn = False
        for run, color in zip(runs, colors, strict=True):
            drawn |= _draw_series(ax, run, key, color, style, spec.sparse, smoothing, max_points)
        if drawn:
            used.append((label, style))
    _mark_alarms(ax, runs, colors, alarm_steps)
    ax.set_xlabel("step")
    ax.set_ylabel(spec.ylabel)
    _legend(ax, runs, colors, used)
    shown = ("validation points, not smoothed" if spec.sparse
             else f"faint: every step; line: EMA-smoothed, weight {smoothing:g}")
    return _finish(fig, [ax], out_dir / f"{spec.name}.png", f"{spec.title} ({shown})")


def plot_loss(
    runs: Sequence[RunData],
    out_dir: Path,
    *,
    smoothing: float,
    max_points: int,
    alarm_steps: dict[str, int | None],
) -> Path | None:
    """Policy-gradient loss and KL side by side (their scales differ by orders of magnitude)."""
    if not any(run.metrics.has(key) for run in runs for key, _ in LOSS_KEYS):
        return None
    colors = _colors(len(runs))
    fig, axes = _new_figure(WIDE_FIGSIZE, ncols=2)
    for ax, (key, label) in zip(axes, LOSS_KEYS, strict=True):
        for run, color in zip(runs, colors, strict=True):
            _draw_series(ax, run, key, color, "-", False, smoothing, max_points)
        _mark_alarms(ax, runs, colors, alarm_steps)
        ax.set_title(f"{label} ({key})", fontsize=9)
        ax.set_xlabel("step")
    _legend(axes[0], runs, colors, [])
    return _finish(fig, axes, out_dir / "loss.png", "Loss")


def _stage_keys(runs: Sequence[RunData]) -> list[str]:
    keys: set[str] = set()
    for run in runs:
        keys.update(k for k in run.metrics.keys() if k.startswith(TIME_PREFIX))
    keys.discard(TIME_TOTAL_KEY)
    return sorted(k for k in keys if any(run.metrics.has(k) for run in runs))


def plot_step_time(
    runs: Sequence[RunData], out_dir: Path, *, smoothing: float, max_points: int
) -> Path | None:
    """Step-time breakdown: stacked mean seconds per stage per run (left); over steps (right).

    Right panel: one run -> stacked (smoothed) stage times over steps; several runs ->
    each run's total ``time/step`` (or the sum of its stages) over steps.
    """
    stages = _stage_keys(runs)
    if not stages:
        return None
    stage_colors = _colors(len(stages), STAGE_PALETTE)  # distinct from the run colours
    fig, (left, right) = _new_figure(WIDE_FIGSIZE, ncols=2)
    names = [run.name for run in runs]
    offsets = np.zeros(len(runs))
    for stage, color in zip(stages, stage_colors, strict=True):
        means = np.array(
            [float(np.mean(v)) if (v := run.metrics.series(stage)[1]).size else 0.0 for run in runs]
        )
        left.barh(names, means, left=offsets, color=color, label=stage[len(TIME_PREFIX) :])
        offsets += means
    left.set_xlabel("mean seconds per step")
    left.invert_yaxis()
    left.tick_params(axis="y", labelsize=7)
    left.legend(fontsize=7, loc="upper center", bbox_to_anchor=(0.5, -0.2), ncol=len(stages))
    if len(runs) == 1:
        run = runs[0]
        steps = run.metrics.steps.astype(np.float64)
        idx = _subsample(steps.size, max_points)
        stacks = []
        for stage in stages:
            s_steps, s_vals = run.metrics.series(stage)
            full = np.interp(steps, s_steps, s_vals) if s_steps.size else np.zeros_like(steps)
            stacks.append(ema_smooth(full, smoothing)[idx])
        right.stackplot(
            steps[idx],
            *stacks,
            colors=stage_colors,
            labels=[s[len(TIME_PREFIX) :] for s in stages],
            alpha=0.85,
        )
        right.set_title("stage seconds over steps (smoothed, stacked)", fontsize=9)
    else:
        for run, color in zip(runs, _colors(len(runs)), strict=True):
            if run.metrics.has(TIME_TOTAL_KEY):
                _draw_series(right, run, TIME_TOTAL_KEY, color, "-", False, smoothing, max_points)
            else:
                steps = run.metrics.steps.astype(np.float64)
                total = np.zeros_like(steps)
                for stage in stages:
                    s_steps, s_vals = run.metrics.series(stage)
                    if s_steps.size:
                        total += np.interp(steps, s_steps, s_vals)
                idx = _subsample(steps.size, max_points)
                right.plot(steps[idx], ema_smooth(total, smoothing)[idx], color=color, lw=1.6)
        right.set_title("seconds per step (smoothed)", fontsize=9)
        _legend(right, runs, _colors(len(runs)), [])
    right.set_xlabel("step")
    return _finish(fig, [left, right], out_dir / "step_time.png", "Step time breakdown", tight=True)


def make_plots(
    runs: Sequence[RunData],
    out_dir: str | Path,
    *,
    smoothing: float = DEFAULT_SMOOTHING,
    max_points: int = DEFAULT_MAX_POINTS,
    alarm_steps: dict[str, int | None] | None = None,
    only: Sequence[str] | None = None,
) -> dict[str, Path]:
    """Write every plot that has data to ``out_dir``; returns ``{plot name: png path}``.

    Plot names (in order): see :data:`PLOT_NAMES`; ``only`` restricts to a subset (unknown
    names raise ValueError listing the valid ones). A plot whose metrics no run logs
    (e.g. ``label_accuracy`` on unlabelled data) is skipped, not drawn empty.
    """
    if max_points < 2:
        raise ValueError(f"max_points must be >= 2, got {max_points}")
    ema_smooth(np.zeros(0), smoothing)  # validates the weight before any drawing
    wanted = set(PLOT_NAMES if only is None else only)
    unknown = sorted(wanted - set(PLOT_NAMES))
    if unknown:
        raise ValueError(f"unknown plot(s) {unknown}; valid: {', '.join(PLOT_NAMES)}")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    alarm_steps = alarm_steps or {}
    kwargs = {"smoothing": smoothing, "max_points": max_points}
    paths: dict[str, Path | None] = {}
    for spec in LINE_PLOTS:
        if spec.name in wanted:
            paths[spec.name] = plot_line(spec, runs, out, alarm_steps=alarm_steps, **kwargs)
    if "loss" in wanted:
        paths["loss"] = plot_loss(runs, out, alarm_steps=alarm_steps, **kwargs)
    if "step_time" in wanted:
        paths["step_time"] = plot_step_time(runs, out, **kwargs)
    return {name: path for name, path in paths.items() if path is not None}
