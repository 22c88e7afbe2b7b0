"""The demo recipe end to end on a reduced lab model (seconds instead of minutes)."""

from __future__ import annotations

from test_trainer_cli import FAST, metrics, mgrpo

from mgrpo.lab import build_lab_model
from mgrpo.lab.config import QUICK_LAB_CONFIG


def test_two_demo_steps_on_a_reduced_lab_model(tmp_path):
    model_dir = build_lab_model(QUICK_LAB_CONFIG, cache_dir=tmp_path / "cache", progress=False)
    out = tmp_path / "run"
    proc = mgrpo(
        "train", "demo", "-o", str(out), f"model.name={model_dir}", "trainer.max_steps=2",
        "validation.limit=4", "validation.samples=2", "generation.max_new_tokens=12",
        "validation.max_new_tokens=12", "data.limit=32", *FAST,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    rows = metrics(out)
    assert [r["step"] for r in rows] == [0, 1, 2]  # step 0: validation before training
    assert rows[1]["entropy/momentum"] is not None  # m-grpo: momentum rollouts were sampled
    assert "val/accuracy" in rows[-1] and "label/accuracy" in rows[1]
    assert "| val accuracy |" in proc.stderr  # the before/after table
    assert (out / "checkpoints" / "step-2" / "model.safetensors").is_file()
