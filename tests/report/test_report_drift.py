"""Initial weights of a run for the weight-drift columns: model directories and lab worlds."""

from __future__ import annotations

from mgrpo.lab import lab_model_path
from mgrpo.lab.worlds import WORLDS
from mgrpo.report.drift import initial_weights
from mgrpo.train.run.run_dir import HF_WEIGHTS_FILE as POLICY_FILE


def test_initial_weights_of_each_lab_world_and_of_a_directory(tmp_path, monkeypatch):
    monkeypatch.setenv("MGRPO_CACHE_DIR", str(tmp_path / "cache"))
    for name, world in WORLDS.items():
        entry = lab_model_path(world.config)
        entry.mkdir(parents=True)
        (entry / POLICY_FILE).write_bytes(b"weights")
        model_name = "lab" if name == "default" else f"lab:{name}"
        assert initial_weights({"model.name": model_name}) == entry / POLICY_FILE
    assert initial_weights({"model.name": "lab:no-such-world"}) is None
    model_dir = tmp_path / "model"
    model_dir.mkdir()
    assert initial_weights({"model.name": str(model_dir)}) is None  # no weights file yet
    (model_dir / POLICY_FILE).write_bytes(b"weights")
    assert initial_weights({"model.name": str(model_dir)}) == model_dir / POLICY_FILE
