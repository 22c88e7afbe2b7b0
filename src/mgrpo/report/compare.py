"""`mgrpo compare RECIPE --presets srt,m-grpo [--rollouts 8,16,32] [--seeds 0,1] [-o DIR]`.

Runs the same recipe under every preset x G x seed, sequentially, each as a normal
``mgrpo train`` subprocess into its own run directory::

    python -m mgrpo train RECIPE -o DIR/<preset>-G<g>-s<seed> [--resume] \\
        algorithm.preset=P algorithm.rollouts=G seed=S [extra key=value ...]

then writes one report over all runs (``DIR/report/``) plus a scaling table in the layout
of the paper's Tables 1 and 3 (rows preset x G; columns validation accuracy at the best
and the final validation step, then one column per evaluated benchmark), as
``DIR/scaling.md`` and inside ``DIR/report/report.html``.

Sweep dimensions left out are not overridden (the recipe's value is used) and drop out
of the directory name: ``--presets srt`` alone gives ``DIR/srt``.

Restarts: a run whose ``metrics.jsonl`` already reaches ``trainer.max_steps`` (from its
resolved ``config.yaml``) is skipped; an incomplete run with a checkpoint is continued
with ``--resume``; an incomplete run without one is moved aside to
``<dir>.incomplete-<k>`` (never deleted) and started afresh.

Departure from the paper: with several seeds the table shows mean ± std over seeds
(the paper reports single runs).
"""

from __future__ import annotations

import itertools
import statistics
import subprocess
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from mgrpo.report.html import MISSING, Table
from mgrpo.report.runs import (
    CONFIG_FILE,
    METRICS_FILE,
    MetricsError,
    flatten_config,
    load_run,
    read_config,
    read_metrics,
)

#: fallback when mgrpo.train.presets (the lead's preset registry) is not importable
KNOWN_PRESETS = ("m-grpo", "srt", "ttrl", "intuitor", "grpo")
PRESET_KEY = "algorithm.preset"
ROLLOUTS_KEY = "algorithm.rollouts"
SEED_KEY = "seed"
MAX_STEPS_KEY = "trainer.max_steps"
CHECKPOINT_DIR = "checkpoints"
REPORT_SUBDIR = "report"
SCALING_FILE = "scaling.md"
VAL_KEY = "val/accuracy"
MIN_ROLLOUTS = 2


#: runner(argv, run_dir) -> exit status; the default runs argv as a subprocess
Runner = Callable[[list[str], Path], int]


def valid_presets() -> tuple[str, ...]:
    try:
        from mgrpo.train.presets import PRESETS  # type: ignore[attr-defined]

        return tuple(PRESETS)
    except (ImportError, AttributeError):
        return KNOWN_PRESETS


@dataclass(frozen=True)
class RunSpec:
    """One cell of the sweep."""

    preset: str
    rollouts: int | None
    seed: int | None

    @property
    def dirname(self) -> str:
        parts = [self.preset]
        if self.rollouts is not None:
            parts.append(f"G{self.rollouts}")
        if self.seed is not None:
            parts.append(f"s{self.seed}")
        return "-".join(parts)

    def overrides(self) -> list[str]:
        out = [f"{PRESET_KEY}={self.preset}"]
        if self.rollouts is not None:
            out.append(f"{ROLLOUTS_KEY}={self.rollouts}")
        if self.seed is not None:
            out.append(f"{SEED_KEY}={self.seed}")
        return out


def _int_list(text: str | None, name: str, minimum: int) -> list[int | None]:
    if text is None:
        return [None]
    values: list[int | None] = []
    for item in text.split(","):
        item = item.strip()
        try:
            value = int(item)
        except ValueError:
            raise ValueError(f"--{name}: {item!r} is not an integer (got {text!r})") from None
        if value < minimum:
            raise ValueError(f"--{name}: {value} must be >= {minimum}")
        if value in values:
            raise ValueError(f"--{name}: {value} is listed twice")
        values.append(value)
    return values


def plan_runs(presets: str, rollouts: str | None, seeds: str | None) -> list[RunSpec]:
    """Parse the comma lists and return the sweep (preset-major, then G, then seed)."""
    names = [p.strip() for p in presets.split(",") if p.strip()]
    if not names:
        raise ValueError("--presets: give at least one preset, e.g. srt,m-grpo")
    valid = valid_presets()
    for name in names:
        if name not in valid:
            raise ValueError(f"--presets: unknown preset {name!r}; valid: {', '.join(valid)}")
    if len(set(names)) != len(names):
        raise ValueError(f"--presets: a preset is listed twice ({presets!r})")
    gs = _int_list(rollouts, "rollouts", MIN_ROLLOUTS)
    ss = _int_list(seeds, "seeds", 0)
    return [RunSpec(p, g, s) for p, g, s in itertools.product(names, gs, ss)]


def check_overrides(overrides: Sequence[str], spec: RunSpec) -> None:
    """Extra overrides must be key=value and must not set a swept key."""
    swept = {o.split("=", 1)[0] for o in spec.overrides()}
    for item in overrides:
        if "=" not in item or item.startswith("="):
            raise ValueError(f"override {item!r} is not of the form key=value")
        key = item.split("=", 1)[0]
        if key in swept:
            raise ValueError(
                f"override {item!r} sets {key}, which compare sweeps; "
                "use --presets/--rollouts/--seeds instead"
            )


def train_command(
    recipe: str, run_dir: Path, spec: RunSpec, overrides: Sequence[str], *, resume: bool = False
) -> list[str]:
    """The exact argv of one training run."""
    argv = [sys.executable, "-m", "mgrpo", "train", recipe, "-o", str(run_dir)]
    if resume:
        argv.append("--resume")
    return argv + spec.overrides() + list(overrides)


def requested_max_steps(overrides: Sequence[str]) -> int | None:
    """``trainer.max_steps`` set on the command line (last one wins), else None."""
    value = None
    for item in overrides:
        key, _, raw = item.partition("=")
        if key == MAX_STEPS_KEY:
            try:
                value = int(raw)
            except ValueError:
                raise ValueError(f"override {item!r}: {MAX_STEPS_KEY} must be an integer") from None
    return value


def run_state(run_dir: Path, max_steps: int | None = None) -> str:
    """``"missing"`` | ``"complete"`` | ``"resumable"`` | ``"incomplete"`` (no checkpoint).

    Complete = ``metrics.jsonl`` reaches ``max_steps`` (default: the run's own resolved
    ``trainer.max_steps``; pass the requested value when the sweep asks for more steps, so a
    finished shorter run is resumed rather than skipped).
    """
    if not run_dir.exists() or (run_dir.is_dir() and not any(run_dir.iterdir())):
        return "missing"
    metrics, config = run_dir / METRICS_FILE, run_dir / CONFIG_FILE
    if metrics.is_file() and config.is_file():
        try:
            if max_steps is None:
                max_steps = flatten_config(read_config(config)).get(MAX_STEPS_KEY)
            log = read_metrics(metrics, lenient=True)
        except MetricsError:
            log = None
        if isinstance(max_steps, int) and log is not None and log.records:
            # steps may be numbered from 0 or 1: complete when either reaches max_steps
            if log.last_step >= max_steps or len(log.records) >= max_steps:
                return "complete"
    ckpt = run_dir / CHECKPOINT_DIR
    if ckpt.is_dir() and any(p.is_dir() and p.name.startswith("step-") for p in ckpt.iterdir()):
        return "resumable"
    return "incomplete"


def subprocess_runner(argv: list[str], run_dir: Path) -> int:
    """Default runner: the training run inherits this terminal (progress bar visible)."""
    return subprocess.run(argv, check=False).returncode


def _move_aside(run_dir: Path) -> Path:
    k = 1
    while (target := run_dir.with_name(f"{run_dir.name}.incomplete-{k}")).exists():
        k += 1
    run_dir.rename(target)
    return target


@dataclass
class CompareOutcome:
    spec: RunSpec
    run_dir: Path
    action: str  # "skipped" | "ran" | "resumed"
    returncode: int


def run_sweep(
    recipe: str,
    specs: Sequence[RunSpec],
    out_dir: Path,
    overrides: Sequence[str],
    *,
    runner: Runner = subprocess_runner,
    fail_fast: bool = False,
    log: Callable[[str], None] = print,
) -> list[CompareOutcome]:
    """Run every spec not yet complete, sequentially. Returns one outcome per spec."""
    out_dir.mkdir(parents=True, exist_ok=True)
    outcomes: list[CompareOutcome] = []
    for i, spec in enumerate(specs, 1):
        check_overrides(overrides, spec)
        run_dir = out_dir / spec.dirname
        state = run_state(run_dir, requested_max_steps(overrides))
        tag = f"[{i}/{len(specs)}] {spec.dirname}"
        if state == "complete":
            log(f"{tag}: already complete, skipped")
            outcomes.append(CompareOutcome(spec, run_dir, "skipped", 0))
            continue
        if state == "incomplete":
            moved = _move_aside(run_dir)
            log(f"{tag}: incomplete run without checkpoint moved to {moved}")
        resume = state == "resumable"
        argv = train_command(recipe, run_dir, spec, overrides, resume=resume)
        log(f"{tag}: {'resuming' if resume else 'running'}: {' '.join(argv)}")
        rc = int(runner(argv, run_dir))
        outcomes.append(CompareOutcome(spec, run_dir, "resumed" if resume else "ran", rc))
        if rc != 0:
            log(f"{tag}: FAILED with exit status {rc}")
            if fail_fast:
                break
    return outcomes


def _mean_std(values: list[float]) -> str:
    if not values:
        return MISSING
    mean = 100.0 * statistics.fmean(values)
    if len(values) == 1:
        return f"{mean:.1f}"
    return f"{mean:.1f} ± {100.0 * statistics.stdev(values):.1f}"


def scaling_table(run_dirs: Sequence[Path]) -> Table:
    """Paper Tables 1/3 layout: rows preset x G (seeds pooled), accuracy columns in %.

    Columns: val accuracy at its best and at the final validation step, then one column per
    benchmark found in the runs' eval results (headline metric, e.g. avg@k). Cells are the
    mean over seeds (± std when several), em dash when no run of the row has the value.
    """
    rows: dict[tuple[str, str], dict[str, list[float]]] = {}
    benches: list[str] = []
    for path in run_dirs:
        run = load_run(path, lenient=True)
        flat = run.flat_config
        key = (str(flat.get(PRESET_KEY, path.name)), str(flat.get(ROLLOUTS_KEY, MISSING)))
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
