"""Read a run directory: `metrics.jsonl`, the resolved `config.yaml`, eval results.

A run directory (the trainer's contract, see docs/design.md §6) holds

- ``metrics.jsonl`` -- one JSON object per training step (``step`` plus scalar metrics;
  ``val/accuracy`` only on validation steps; ``alarm/reason`` is a string);
  stored runs may keep it compressed as ``metrics.jsonl.xz`` or ``metrics.jsonl.gz``
  (:func:`metrics_file` picks the one present; the contents are the same bytes);
- ``config.yaml`` -- the fully resolved config (nested mapping);
- ``eval*/results.json`` -- output of ``mgrpo eval`` when the user evaluated checkpoints.

Robustness rules (a run may have been killed mid-write, or resumed):

- the *last* line of ``metrics.jsonl`` may be a partial JSON object: it is ignored and
  reported in :attr:`RunMetrics.partial_line`, never an error;
- any other undecodable line is bad input: :class:`MetricsError` naming file and line,
  unless ``lenient=True`` (then it is skipped and listed in :attr:`RunMetrics.warnings`);
- a step logged twice (a resume that re-ran steps after the last checkpoint) keeps the
  *last* record for that step, so the log reflects what the resumed run produced.
"""

from __future__ import annotations

import gzip
import json
import lzma
import math
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from mgrpo.config import flatten_config
from mgrpo.train.run.run_dir import CONFIG_FILE, EVAL_GLOB, METRICS_FILE

#: compressed forms of ``metrics.jsonl`` (stored study runs), in the order they are looked for
COMPRESSED_METRICS = {".xz": lzma.decompress, ".gz": gzip.decompress}
STEP_KEY = "step"

#: keys of the resolved config that make up a run's display name, with their short label
NAME_KEYS: tuple[tuple[str, str], ...] = (
    ("algorithm.rollouts", "G"),
    ("seed", "seed"),
)
PRESET_KEY = "algorithm.preset"
RUN_NAME_KEY = "trainer.run_name"

_AVG_AT_K = re.compile(r"^avg@\d+$")


class MetricsError(ValueError):
    """A run directory's files cannot be read (message names the file and line)."""


@dataclass
class RunMetrics:
    """The parsed ``metrics.jsonl`` of one run.

    ``records`` are sorted by step with duplicates resolved (last wins). ``partial_line``
    is the 1-based line number of an ignored truncated last line, else None.
    """

    path: Path
    records: list[dict[str, Any]]
    partial_line: int | None = None
    duplicate_steps: int = 0
    warnings: list[str] = field(default_factory=list)

    @property
    def steps(self) -> np.ndarray:
        return np.array([r[STEP_KEY] for r in self.records], dtype=np.int64)

    @property
    def last_step(self) -> int | None:
        return int(self.records[-1][STEP_KEY]) if self.records else None

    def keys(self) -> set[str]:
        out: set[str] = set()
        for r in self.records:
            out.update(r)
        return out

    def has(self, key: str) -> bool:
        """True when at least one record has a finite numeric value for ``key``."""
        return any(_as_float(r.get(key)) is not None for r in self.records)

    def series(self, key: str) -> tuple[np.ndarray, np.ndarray]:
        """(steps, values) of the records where ``key`` is a finite number, as float arrays.

        Non-numeric values (strings, None) are skipped; NaN/inf are skipped too, so a
        sparse key such as ``val/accuracy`` gives only its validation steps.
        """
        steps: list[int] = []
        values: list[float] = []
        for r in self.records:
            v = _as_float(r.get(key))
            if v is not None:
                steps.append(r[STEP_KEY])
                values.append(v)
        return np.asarray(steps, dtype=np.float64), np.asarray(values, dtype=np.float64)


def _as_float(value: Any) -> float | None:
    if isinstance(value, bool):
        return float(value)
    if isinstance(value, (int, float)):
        f = float(value)
        return f if math.isfinite(f) else None
    return None


def metrics_file(run_dir: str | Path) -> Path:
    """The run's metrics file: ``metrics.jsonl``, else its first compressed form present
    (``COMPRESSED_METRICS``), else ``metrics.jsonl`` (missing; its readers say so)."""
    plain = Path(run_dir) / METRICS_FILE
    if plain.is_file():
        return plain
    for suffix in COMPRESSED_METRICS:
        packed = plain.with_name(METRICS_FILE + suffix)
        if packed.is_file():
            return packed
    return plain


def read_metrics(path: str | Path, *, lenient: bool = False) -> RunMetrics:
    """Parse a ``metrics.jsonl`` file, or its ``.xz`` / ``.gz`` form (rules in the module
    docstring).

    Raises :class:`MetricsError` when the file is missing, a non-final line is not a JSON
    object (unless ``lenient``), or a record has no integer ``step``.
    """
    path = Path(path)
    if not path.is_file():
        raise MetricsError(f"{path}: metrics file not found")
    raw = path.read_bytes()
    if path.suffix in COMPRESSED_METRICS:
        try:
            raw = COMPRESSED_METRICS[path.suffix](raw)
        except (OSError, EOFError, lzma.LZMAError) as exc:
            raise MetricsError(f"{path}: not a valid {path.suffix} file ({exc})") from None
    text = raw.decode("utf-8", errors="replace")
    lines = text.split("\n")
    # a file that ends with "\n" yields a trailing "" element; a partial write does not
    by_step: dict[int, dict[str, Any]] = {}
    partial_line: int | None = None
    duplicates = 0
    warnings: list[str] = []
    last_index = max(i for i, line in enumerate(lines) if line.strip()) if text.strip() else -1
    for i, line in enumerate(lines):
        if not line.strip():
            continue
        lineno = i + 1
        try:
            record = json.loads(line)
        except json.JSONDecodeError as exc:
            if i == last_index:
                partial_line = lineno
                warnings.append(
                    f"{path}:{lineno}: ignored a truncated last line "
                    f"({len(line)} characters; the run was probably killed mid-write)"
                )
                continue
            if lenient:
                warnings.append(f"{path}:{lineno}: skipped an undecodable line ({exc.msg})")
                continue
            raise MetricsError(f"{path}:{lineno}: not valid JSON ({exc.msg})") from exc
        if not isinstance(record, dict):
            msg = f"{path}:{lineno}: expected a JSON object, got {type(record).__name__}"
            if lenient:
                warnings.append(msg)
                continue
            raise MetricsError(msg)
        step = record.get(STEP_KEY)
        if isinstance(step, float) and step.is_integer():
            step = int(step)
        if not isinstance(step, int) or isinstance(step, bool):
            msg = f"{path}:{lineno}: record has no integer '{STEP_KEY}' (got {step!r})"
            if lenient:
                warnings.append(msg)
                continue
            raise MetricsError(msg)
        record[STEP_KEY] = step
        if step in by_step:
            duplicates += 1
        by_step[step] = record
    if duplicates:
        warnings.append(
            f"{path}: {duplicates} step(s) were logged more than once (a resumed run?); "
            "the last record of each step is used"
        )
    records = [by_step[s] for s in sorted(by_step)]
    return RunMetrics(path, records, partial_line, duplicates, warnings)


def read_config(path: str | Path) -> dict[str, Any]:
    """Load a resolved ``config.yaml`` (nested mapping). Raises :class:`MetricsError`."""
    # lazy, start-up: only (de)serialising a config needs yaml
    import yaml

    path = Path(path)
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as exc:
        raise MetricsError(f"{path}: invalid YAML ({exc})") from exc
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise MetricsError(
            f"{path}: expected a mapping at the top level, got {type(data).__name__}"
        )
    return data


@dataclass
class EvalResult:
    """One ``results.json``: benchmark -> {metric: value}; ``primary`` picks the headline."""

    path: Path
    name: str  # the eval directory's name, e.g. "eval" or "eval-step-200"
    benchmarks: dict[str, dict[str, Any]]

    def primary(self, bench: str) -> tuple[str, float] | None:
        """Headline metric of a benchmark: the first ``avg@k``, else accuracy, else pass@1."""
        metrics = self.benchmarks.get(bench, {})
        for key in metrics:
            if _AVG_AT_K.match(key) and _as_float(metrics[key]) is not None:
                return key, float(metrics[key])
        for key in ("accuracy", "avg@k", "pass@1", "maj@k"):
            v = _as_float(metrics.get(key))
            if v is not None:
                k = metrics.get("samples")
                if key.endswith("@k") and isinstance(k, int) and not isinstance(k, bool):
                    key = f"{key[:-1]}{k}"  # mgrpo eval writes "avg@k" and "samples": k
                return key, v
        return None


def read_eval_results(path: str | Path) -> EvalResult:
    """Parse a ``results.json`` of ``mgrpo eval``.

    Accepted shapes: ``{"benchmarks": {name: {...}}, ...}`` or ``{name: {...}, ...}``
    (top-level entries that are not mappings, e.g. settings, are ignored).
    """
    path = Path(path)
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise MetricsError(f"{path}:{exc.lineno}: invalid JSON ({exc.msg})") from exc
    if not isinstance(data, dict):
        raise MetricsError(f"{path}: expected a JSON object")
    source = data.get("benchmarks") if isinstance(data.get("benchmarks"), dict) else data
    benchmarks = {
        str(k): v
        for k, v in source.items()
        if isinstance(v, dict) and any(_as_float(x) is not None for x in v.values())
    }
    return EvalResult(path, path.parent.name, benchmarks)


@dataclass
class RunData:
    """Everything the report needs from one run directory."""

    path: Path
    name: str
    metrics: RunMetrics
    config: dict[str, Any]  # nested, as in config.yaml; {} when absent
    evals: list[EvalResult]
    warnings: list[str]

    @property
    def flat_config(self) -> dict[str, Any]:
        return flatten_config(self.config)


def run_display_name(flat_config: dict[str, Any], fallback: str) -> str:
    """The run's ``trainer.run_name`` when set (`mgrpo compare` sets it to the run's arm
    directory, e.g. ``"m-grpo-N8-s0"``); else ``"m-grpo G=16 seed=0"`` from the resolved
    config; ``fallback`` when it has neither."""
    run_name = flat_config.get(RUN_NAME_KEY)
    if isinstance(run_name, str) and run_name.strip():
        return run_name
    preset = flat_config.get(PRESET_KEY)
    if preset is None:
        return fallback
    parts = [str(preset)]
    for key, label in NAME_KEYS:
        if key in flat_config and flat_config[key] is not None:
            parts.append(f"{label}={flat_config[key]}")
    return " ".join(parts)


def load_run(path: str | Path, *, lenient: bool = False) -> RunData:
    """Read a run directory (``metrics.jsonl`` required; config and evals optional)."""
    path = Path(path)
    if not path.is_dir():
        raise MetricsError(f"{path}: run directory not found")
    metrics = read_metrics(metrics_file(path), lenient=lenient)
    warnings = list(metrics.warnings)
    config: dict[str, Any] = {}
    if (path / CONFIG_FILE).is_file():
        config = read_config(path / CONFIG_FILE)
    else:
        warnings.append(f"{path}: no {CONFIG_FILE}; the run is named after its directory")
    evals = [read_eval_results(p) for p in sorted(path.glob(EVAL_GLOB))]
    name = run_display_name(flatten_config(config), path.name)
    return RunData(path, name, metrics, config, evals, warnings)


def load_runs(paths: list[str | Path], *, lenient: bool = False) -> list[RunData]:
    """Load several runs; names that collide get their directory name appended."""
    runs = [load_run(p, lenient=lenient) for p in paths]
    counts: dict[str, int] = {}
    for run in runs:
        counts[run.name] = counts.get(run.name, 0) + 1
    for run in runs:
        if counts[run.name] > 1:
            run.name = f"{run.name} ({run.path.name})"
    return runs
