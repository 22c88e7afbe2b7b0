"""The run's own metrics log: `metrics.jsonl` (one JSON object per step) and TensorBoard.

Written by rank 0 only. Each line is flushed and fsynced, so a killed run loses at most the
line being written; a partial last line is skipped when read back, and `truncate_after`
drops the lines of steps a resumed run will redo. Non-finite floats are written as null.
Reading finished runs for reports is `mgrpo.report.runs.read_metrics`.
"""

from __future__ import annotations

import json
import math
import os
import warnings
from pathlib import Path
from typing import Any

from mgrpo.files import write_text_atomic
from mgrpo.train.run import faults
from mgrpo.train.run.run_dir import METRICS_FILE, TENSORBOARD_DIR


class MetricsWriter:
    """Appends one JSON line per step (fsynced) and mirrors scalars to TensorBoard. The
    TensorBoard writer (an import and an event file, ~0.2 s) opens at the first write, so it
    does not delay the first step."""

    def __init__(self, run_dir: Path, tensorboard: bool = True) -> None:
        self.path = run_dir / METRICS_FILE
        self.tensorboard_dir = run_dir / TENSORBOARD_DIR if tensorboard else None
        self.writer = None

    def _open_writer(self) -> None:
        directory, self.tensorboard_dir = self.tensorboard_dir, None  # one attempt only
        try:
            # lazy, start-up: tensorboard only when a run logs to it
            from torch.utils.tensorboard import SummaryWriter

            self.writer = SummaryWriter(str(directory))
        except ImportError:  # pragma: no cover - tensorboard is a dependency
            warnings.warn("tensorboard not installed; skipping TensorBoard logs", stacklevel=2)

    def truncate_after(self, step: int) -> None:
        """Drop lines past `step` (a resumed run rewrites them)."""
        if not self.path.exists():
            return
        keep = []
        for line in self.path.read_text(encoding="utf-8").splitlines():
            try:
                if json.loads(line)["step"] <= step:
                    keep.append(line)
            except (ValueError, KeyError):
                continue  # a partial last line from a killed run
        # atomic: a kill here must not lose lines
        write_text_atomic(self.path, "".join(x + "\n" for x in keep))

    def read(self) -> list[dict[str, Any]]:
        """Complete lines written so far (a partial last line is ignored)."""
        if not self.path.exists():
            return []
        out = []
        for line in self.path.read_text(encoding="utf-8").splitlines():
            try:
                out.append(json.loads(line))
            except ValueError:
                continue
        return out

    def write(self, metrics: dict[str, Any]) -> None:
        clean = {k: (None if isinstance(v, float) and not math.isfinite(v) else v) for k, v in metrics.items()}
        faults.hit("metrics_write", self.path)
        with open(self.path, "a", encoding="utf-8") as fh:
            fh.write(json.dumps(clean) + "\n")
            fh.flush()
            os.fsync(fh.fileno())
        if self.tensorboard_dir is not None:
            self._open_writer()
        if self.writer is not None:
            for key, value in clean.items():
                if key != "step" and isinstance(value, (int, float)) and not isinstance(value, bool):
                    self.writer.add_scalar(key, value, metrics["step"])
            self.writer.flush()

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
