"""Each label-free preset of 2025-26 and each spurious-reward control: three steps of the
`demo` recipe (the lab world, test-time RL on its validation problems) through the real CLI,
on a reduced lab model built once for the module (seconds per run)."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest

from mgrpo.lab import build_lab_model
from mgrpo.lab.config import QUICK_LAB_CONFIG

#: preset -> the rewards it may give (its formula's range)
PRESETS = {
    "evol-rl": (-1.0, 1.0),
    "restrain": (0.0, 1.0),
    "scrl": (-1.0, 1.0),
    "co-rewarding-i": (0.0, 1.0),
    "format": (0.0, 1.0),
    "incorrect-label": (0.0, 1.0),
}
PROMPTS = 2


@pytest.fixture(scope="module")
def lab_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_lab_model(QUICK_LAB_CONFIG, cache_dir=tmp_path_factory.mktemp("lab"),
                           progress=False)


@pytest.mark.parametrize("preset", sorted(PRESETS))
def test_three_lab_steps_through_the_cli(lab_model: Path, tmp_path: Path, preset: str) -> None:
    out = tmp_path / "run"
    env = {**os.environ, "PYTHONHASHSEED": "0", "OMP_NUM_THREADS": "1"}
    proc = subprocess.run(
        [sys.executable, "-m", "mgrpo", "train", "demo", f"algorithm.preset={preset}",
         f"model.name={lab_model}", "trainer.max_steps=3", "algorithm.rollouts=8",
         f"trainer.prompts_per_step={PROMPTS}", "trainer.log_samples_every=3",
         "validation.limit=4", "validation.samples=2", "generation.max_new_tokens=12",
         "validation.max_new_tokens=12", "data.limit=32", "trainer.report_to=[]",
         "trainer.progress=false", "trainer.threads=1", "-o", str(out)],
        capture_output=True, text=True, timeout=600, env=env)
    assert proc.returncode == 0, proc.stderr[-3000:]
    rows = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in rows] == [0, 1, 2, 3]
    low, high = PRESETS[preset]
    for row in rows[1:]:
        assert low <= row["reward/mean"] <= high and math.isfinite(row["loss/pg"]), row
    logged = [json.loads(line) for line in (out / "samples.jsonl").read_text().splitlines()]
    # co-rewarding-i samples each question and its rephrased twin: 2B prompts
    assert len(logged) == PROMPTS * (2 if preset == "co-rewarding-i" else 1)
    rewards = [r["reward"] for s in logged for r in s["rollouts"] if r["reward"] is not None]
    assert rewards and all(low <= r <= high for r in rewards)
    assert (out / "checkpoints" / "step-3" / "model.safetensors").is_file()
