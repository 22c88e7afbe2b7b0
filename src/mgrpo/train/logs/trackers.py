"""Experiment trackers fed from the trainer's metrics rows: Weights & Biases and MLflow.

`trainer.report_to` lists the trackers (`tensorboard`, `wandb`, `mlflow`). TensorBoard is
written by `metrics_writer.MetricsWriter`; this module drives the other two through their own
libraries (optional extras: `pip install 'mgrpo[trackers]'`). Every tracker gets:

- the run name `trainer.run_name` (null = the run directory's name) and the project
  `trainer.project` (the W&B project, the MLflow experiment);
- the resolved config as the run's parameters (W&B: the nested config; MLflow: one
  parameter per dotted key, e.g. `algorithm.rollouts`);
- every numeric value of every metrics.jsonl row at that row's `step` (strings such as
  `alarm/reason`, and null / non-finite values, are skipped; booleans are logged as 0/1).
  MLflow metric names allow no `@`, so `val/maj@k` is logged as `val/maj_at_k`
  (`mlflow_key`); W&B keeps the names and uses `step` as the x-axis of every metric;
- `--resume`: the tracker run ids are stored in `<run dir>/trackers.json` (written
  atomically when a tracker run opens), and a resumed training continues the same runs.

Only rank 0 opens trackers. A tracker that cannot start or write (not installed, no
credentials, a full disk) prints one line naming it and is dropped; training goes on.

Where they write: W&B follows its own settings (`WANDB_MODE=offline`, `WANDB_ENTITY`, ...)
and puts its local files under `<run dir>/wandb` unless `WANDB_DIR` is set. MLflow writes
to `MLFLOW_TRACKING_URI` (a server, or e.g. `sqlite:///mlflow.db`), else to MLflow's
default store.
"""

from __future__ import annotations

import json
import math
import os
import sys
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from mgrpo.config import flatten_config
from mgrpo.files import write_text_atomic
from mgrpo.train.run.run_dir import TRACKERS_FILE

INSTALL_HINT = "pip install 'mgrpo[trackers]'"


def numeric_metrics(row: Mapping[str, Any]) -> dict[str, float]:
    """The loggable values of a metrics row: finite ints/floats (bools as 0/1), `step` excluded."""
    out = {}
    for key, value in row.items():
        if key == "step" or value is None or isinstance(value, str):
            continue
        if isinstance(value, bool):
            value = int(value)
        if isinstance(value, (int, float)) and math.isfinite(value):
            out[key] = float(value)
    return out


def mlflow_key(name: str) -> str:
    """A metric name MLflow accepts (letters, digits, `_ - . / space`): `@` -> `_at_`,
    any other character outside that set -> `_`."""
    name = name.replace("@", "_at_")
    return "".join(c if c.isalnum() or c in "_-./ " else "_" for c in name)


def mlflow_params(config: Mapping[str, Any]) -> dict[str, str]:
    """Nested config -> {"a.b.c": "value"} (`flatten_config`) with values as MLflow stores
    them: str; lists, tuples and empty mappings as JSON; None as "null"."""
    return {key: _param_text(value) for key, value in flatten_config(config).items()}


def _param_text(value: Any) -> str:
    if isinstance(value, (list, tuple, Mapping)):
        return json.dumps(list(value) if isinstance(value, tuple) else value)
    return "null" if value is None else str(value)


def _say(message: str) -> None:
    print(f"mgrpo: {message}", file=sys.stderr, flush=True)


class _WandbRun:
    """One W&B run; `state` holds its id for `--resume`."""

    name = "wandb"

    def __init__(self, config: dict[str, Any], run_dir: Path, run_name: str, project: str,
                 state: dict[str, Any]) -> None:
        # lazy, optional dependency: pip install mgrpo[trackers]
        import wandb

        run_id = state.get("id")  # None: W&B picks a new id
        directory = Path(os.environ.get("WANDB_DIR") or run_dir)
        directory.mkdir(parents=True, exist_ok=True)
        self.run = wandb.init(
            project=project, name=run_name, id=run_id, resume="allow" if run_id else None, config=config,
            dir=str(directory), reinit="create_new",
            settings=wandb.Settings(console="off"),  # tqdm/stderr stay the user's
        )
        self.run.define_metric("step")
        self.run.define_metric("*", step_metric="step")  # re-logged steps after a resume are kept
        self.state = {"id": self.run.id, "project": project}

    def log(self, step: int, values: dict[str, float]) -> None:
        self.run.log({"step": step, **values})

    def close(self) -> None:
        self.run.finish()


class _MlflowRun:
    """One MLflow run through `MlflowClient` (no global active run); `state` holds its id."""

    name = "mlflow"

    def __init__(self, config: dict[str, Any], run_dir: Path, run_name: str, project: str,
                 state: dict[str, Any]) -> None:
        # lazy, optional dependency: pip install mgrpo[trackers]
        from mlflow.entities import Param
        from mlflow.tracking import MlflowClient

        self.client = MlflowClient()  # MLFLOW_TRACKING_URI, else MLflow's default store
        params = mlflow_params(config)
        if state.get("run_id"):
            self.run_id = state["run_id"]
            logged = self.client.get_run(self.run_id).data.params
            # MLflow forbids changing a logged parameter: keys resume may change keep the first value
            params = {k: v for k, v in params.items() if k not in logged}
        else:
            experiment = self.client.get_experiment_by_name(project)
            experiment_id = (experiment.experiment_id if experiment is not None
                             else self.client.create_experiment(project))
            run = self.client.create_run(experiment_id, run_name=run_name,
                                         tags={"mgrpo.run_dir": str(run_dir.resolve())})
            self.run_id = run.info.run_id
        items = [Param(k, v) for k, v in params.items()]
        for start in range(0, len(items), 100):  # MLflow takes <= 100 params per batch
            self.client.log_batch(self.run_id, params=items[start:start + 100])
        self.state = {"run_id": self.run_id, "tracking_uri": self.client.tracking_uri}

    def log(self, step: int, values: dict[str, float]) -> None:
        # lazy, optional dependency: pip install mgrpo[trackers]
        from mlflow.entities import Metric

        now = int(time.time() * 1000)
        metrics = [Metric(mlflow_key(k), v, now, step) for k, v in values.items()]
        for start in range(0, len(metrics), 1000):  # MLflow takes <= 1000 metrics per batch
            self.client.log_batch(self.run_id, metrics=metrics[start:start + 1000])

    def close(self) -> None:
        self.client.set_terminated(self.run_id)


_KINDS = {"wandb": _WandbRun, "mlflow": _MlflowRun}  # report_to name = package name


class Trackers:
    """The W&B / MLflow runs of one training run (`report_to` names; tensorboard ignored here).

    `enabled=False` (ranks other than 0) opens nothing. `log(row)` sends one metrics.jsonl
    row; `close()` ends the tracker runs. A tracker that raises is dropped with one line.
    """

    def __init__(self, report_to: list[str], config: dict[str, Any], run_dir: str | Path, *,
                 run_name: str | None = None, project: str = "mgrpo", enabled: bool = True) -> None:
        self.run_dir = Path(run_dir)
        self.active: list[Any] = []
        names = [n for n in report_to if n in _KINDS] if enabled else []
        if not names:
            return
        saved = self._read_state()
        name = run_name or self.run_dir.resolve().name
        for kind in names:
            try:
                __import__(kind)
            except ImportError:
                _say(f"trainer.report_to lists {kind}, but the {kind} package is not "
                     f"installed ({INSTALL_HINT}); continuing without {kind}")
                continue
            try:
                self.active.append(_KINDS[kind](config, self.run_dir, name, project, saved.get(kind, {})))
            except Exception as exc:  # noqa: BLE001 - any tracker failure must not stop training
                _say(f"{kind} tracker could not start ({type(exc).__name__}: "
                     f"{_first_line(exc)}); continuing without {kind}")
        if self.active:
            self._write_state({**saved, **{t.name: t.state for t in self.active}})

    def _read_state(self) -> dict[str, Any]:
        path = self.run_dir / TRACKERS_FILE
        if not path.is_file():
            return {}
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except ValueError:
            _say(f"{path} is not valid JSON; starting new tracker runs")
            return {}
        return data if isinstance(data, dict) else {}

    def _write_state(self, state: dict[str, Any]) -> None:
        write_text_atomic(self.run_dir / TRACKERS_FILE, json.dumps(state, indent=2) + "\n")

    def log(self, row: Mapping[str, Any]) -> None:
        """Log one metrics row (must hold an int `step`) to every active tracker."""
        if not self.active:
            return
        step, values = int(row["step"]), numeric_metrics(row)
        for tracker in list(self.active):
            try:
                tracker.log(step, values)
            except Exception as exc:  # noqa: BLE001
                self._drop(tracker, "could not log", exc)

    def close(self) -> None:
        for tracker in list(self.active):
            try:
                tracker.close()
            except Exception as exc:  # noqa: BLE001
                self._drop(tracker, "could not close its run", exc)
        self.active = []

    def _drop(self, tracker: Any, what: str, exc: Exception) -> None:
        self.active.remove(tracker)
        _say(f"{tracker.name} tracker {what} ({type(exc).__name__}: {_first_line(exc)}); "
             f"continuing without {tracker.name}")


def _first_line(exc: Exception) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else "no message"
