"""W&B (offline) and MLflow (local SQLite store) trackers, for real: a tiny run is trained,
paused and resumed, then each tracker's run is read back through the library's own reader
(`wandb leet inspect --json`, `MlflowClient`) and compared with metrics.jsonl."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from mgrpo.config import config_to_dict, resolve_config
from mgrpo.train.logs.trackers import mlflow_key, mlflow_params, numeric_metrics
from mgrpo.train.run.run_dir import TRACKERS_FILE
from mgrpo.train.run.trainer import train


def _rows(run_dir: Path) -> list[dict]:
    return [json.loads(x) for x in (run_dir / "metrics.jsonl").read_text().splitlines()]


def _cfg(*extra: str):
    return resolve_config("tiny", ["trainer.progress=false", "trainer.max_steps=3",
                                   "validation.data=null", *extra])


def _wandb_records(wandb_file: Path) -> list[dict]:
    """Every record of a W&B transaction log, through W&B's own reader."""
    out = subprocess.run(
        [sys.executable, "-m", "wandb", "leet", "inspect", "--json", str(wandb_file)],
        capture_output=True, text=True, timeout=120, check=True,
    ).stdout
    return [json.loads(line) for line in out.splitlines() if line.startswith("{")]


@pytest.fixture
def offline_wandb(tmp_path, monkeypatch):
    pytest.importorskip("wandb", reason="wandb not installed (pip install 'mgrpo[trackers]')")
    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("WANDB_SILENT", "true")
    monkeypatch.setenv("WANDB_CONFIG_DIR", str(tmp_path / "wandb-config"))
    monkeypatch.setenv("WANDB_CACHE_DIR", str(tmp_path / "wandb-cache"))
    monkeypatch.delenv("WANDB_DIR", raising=False)


@pytest.fixture
def local_mlflow(tmp_path, monkeypatch):
    pytest.importorskip("mlflow", reason="mlflow not installed (pip install 'mgrpo[trackers]')")
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    return uri


def test_wandb_offline_run_holds_every_metric_config_and_resumes_the_same_run(tmp_path, offline_wandb):
    run_dir = tmp_path / "run"
    keys = ["trainer.report_to=[wandb]", "trainer.run_name=wb-test", "trainer.project=mgrpo-tests"]
    cfg = _cfg(*keys)
    train(_cfg(*keys, "trainer.stop_after=2"), run_dir)
    first_id = json.loads((run_dir / TRACKERS_FILE).read_text())["wandb"]["id"]
    train(cfg, run_dir, resume=True)
    assert json.loads((run_dir / TRACKERS_FILE).read_text())["wandb"]["id"] == first_id

    files = sorted((run_dir / "wandb").glob("offline-run-*/run-*.wandb"))
    assert len(files) == 2 and all(f.name == f"run-{first_id}.wandb" for f in files)  # one run id
    history: dict[int, dict] = {}
    for f in files:
        records = _wandb_records(f)
        run = next(r["run"] for r in records if r["type"] == "run")
        assert run["run_id"] == first_id and run["project"] == "mgrpo-tests"
        assert run["display_name"] == "wb-test"
        logged = run["config"]["update"]
        for key, value in config_to_dict(cfg).items():  # the resolved config, section by section
            if key != "trainer":  # stop_after differs between the two invocations
                assert logged[key] == value, key
        for r in records:
            if r["type"] == "history":
                item = r["history"]["item"]
                history[int(item["step"])] = item
    rows = _rows(run_dir)
    assert [r["step"] for r in rows] == [1, 2, 3] and sorted(history) == [1, 2, 3]
    for row in rows:
        expected = numeric_metrics(row)
        assert expected, row
        got = {k: v for k, v in history[row["step"]].items() if not k.startswith("_") and k != "step"}
        assert got.keys() == expected.keys()
        for key, value in expected.items():
            assert got[key] == pytest.approx(value, rel=1e-12, abs=1e-300), key


def test_mlflow_local_store_holds_every_metric_params_and_resumes_the_same_run(tmp_path, local_mlflow):
    from mlflow.tracking import MlflowClient

    run_dir = tmp_path / "run"
    keys = ["trainer.report_to=[mlflow,tensorboard]", "trainer.run_name=ml-test",
            "trainer.project=mgrpo-tests"]
    cfg = _cfg(*keys)
    train(_cfg(*keys, "trainer.stop_after=2"), run_dir)
    state = json.loads((run_dir / TRACKERS_FILE).read_text())["mlflow"]
    train(cfg, run_dir, resume=True)
    assert json.loads((run_dir / TRACKERS_FILE).read_text())["mlflow"] == state

    client = MlflowClient(tracking_uri=local_mlflow)
    experiment = client.get_experiment_by_name("mgrpo-tests")
    runs = client.search_runs([experiment.experiment_id])
    assert [r.info.run_id for r in runs] == [state["run_id"]]  # resumed, not a second run
    run = runs[0]
    assert run.info.run_name == "ml-test" and run.info.status == "FINISHED"
    params = mlflow_params(config_to_dict(cfg))
    params["trainer.stop_after"] = "2"  # logged by the first invocation; MLflow keeps it
    assert run.data.params == params
    rows = _rows(run_dir)
    keys = {k for row in rows for k in numeric_metrics(row)}
    assert keys and {mlflow_key(k) for k in keys} == set(run.data.metrics)
    for key in keys:
        history = {m.step: m.value for m in client.get_metric_history(run.info.run_id, mlflow_key(key))}
        expected = {r["step"]: numeric_metrics(r)[key] for r in rows if key in numeric_metrics(r)}
        assert history.keys() == expected.keys(), key
        for step, value in expected.items():
            assert history[step] == pytest.approx(value, rel=1e-12, abs=1e-300), (key, step)
    assert (run_dir / "tensorboard").is_dir()


def test_tracker_that_cannot_start_prints_one_line_and_training_goes_on(tmp_path, monkeypatch, capsys):
    pytest.importorskip("mlflow", reason="mlflow not installed (pip install 'mgrpo[trackers]')")
    blocker = tmp_path / "a-file"
    blocker.write_text("not a directory")
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{blocker / 'mlflow.db'}")
    run_dir = tmp_path / "run"
    train(_cfg("trainer.report_to=[mlflow]"), run_dir)
    assert [r["step"] for r in _rows(run_dir)] == [1, 2, 3]
    lines = [x for x in capsys.readouterr().err.splitlines() if "mlflow tracker" in x]
    assert len(lines) == 1 and "continuing without mlflow" in lines[0]
    assert not (run_dir / "tensorboard").exists()  # report_to without tensorboard


def test_missing_tracker_package_names_the_install_command(tmp_path, monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "wandb", None)  # Python's own "not importable" marker
    run_dir = tmp_path / "run"
    train(_cfg("trainer.report_to=[wandb]"), run_dir)
    assert [r["step"] for r in _rows(run_dir)] == [1, 2, 3]
    lines = [x for x in capsys.readouterr().err.splitlines() if "wandb" in x]
    assert len(lines) == 1 and "pip install 'mgrpo[trackers]'" in lines[0], lines
    assert not (run_dir / TRACKERS_FILE).exists()


def test_numeric_metrics_and_names():
    row = {"step": 4, "loss": 0.5, "n": 3, "flag": True, "alarm/reason": "x", "gone": None,
           "bad": float("nan"), "val/maj@k": 0.25}
    assert numeric_metrics(row) == {"loss": 0.5, "n": 3.0, "flag": 1.0, "val/maj@k": 0.25}
    assert mlflow_key("val/maj@k") == "val/maj_at_k" and mlflow_key("a b/c-d.e_f") == "a b/c-d.e_f"
    assert mlflow_key("x:y") == "x_y"
    assert mlflow_params({"a": {"b": 1, "c": None, "d": [1, "x"], "e": {}}}) == {
        "a.b": "1", "a.c": "null", "a.d": '[1, "x"]', "a.e": "{}"}


def test_mlflow_gets_the_step0_validation_row_too(tmp_path, local_mlflow):
    """Every metrics.jsonl row reaches the tracker, the untrained policy's step-0 row included."""
    from mlflow.tracking import MlflowClient

    run_dir = tmp_path / "run"
    train(resolve_config("tiny", ["trainer.progress=false", "trainer.max_steps=1",
                                  "trainer.report_to=[mlflow]", "trainer.project=mgrpo-step0"]),
          run_dir)
    rows = _rows(run_dir)
    assert rows[0]["step"] == 0  # tiny validates: the step-0 row exists
    client = MlflowClient(tracking_uri=local_mlflow)
    run_id = json.loads((run_dir / TRACKERS_FILE).read_text())["mlflow"]["run_id"]
    for key in {k for row in rows for k in numeric_metrics(row)}:
        logged = {m.step: m.value for m in client.get_metric_history(run_id, mlflow_key(key))}
        expected = {r["step"]: numeric_metrics(r)[key] for r in rows if key in numeric_metrics(r)}
        assert logged == pytest.approx(expected, rel=1e-12), key
