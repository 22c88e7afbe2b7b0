"""`mgrpo compare` end to end: real `mgrpo train` subprocesses on the tiny recipe.

Two arms (a preset and a preset-plus-overrides arm) x two seeds, two jobs side by side,
then the same sweep asked for one more step (every run resumes from its checkpoint), then
once more (every run is skipped).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from mgrpo.report.runs import read_metrics

pytestmark = pytest.mark.slow

SRC = Path(__file__).resolve().parents[2] / "src"


def compare(out: Path, steps: int) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": f"{SRC}{os.pathsep}{os.environ.get('PYTHONPATH', '')}"}
    argv = [
        sys.executable, "-m", "mgrpo", "compare", "tiny",
        "--presets", "srt",
        "--arm", "mg-noiqr=m-grpo:algorithm.iqr_k=null,algorithm.momentum=0.9",
        "--seeds", "0-1", "--jobs", "2", "-o", str(out),
        f"trainer.max_steps={steps}", "validation.limit=2", "trainer.save_every=1",
    ]
    return subprocess.run(argv, capture_output=True, text=True, env=env, timeout=600, check=False)


def test_sweep_runs_aggregates_resumes_and_skips(tmp_path):
    out = tmp_path / "sweep"
    first = compare(out, 2)
    assert first.returncode == 0, first.stderr[-3000:]
    names = ["srt-s0", "srt-s1", "mg-noiqr-s0", "mg-noiqr-s1"]
    for name in names:
        run_dir = out / name
        cfg = yaml.safe_load((run_dir / "config.yaml").read_text())
        assert cfg["seed"] == int(name[-1])
        assert cfg["trainer"]["threads"] == 1  # one thread per job on a CPU
        log = read_metrics(run_dir / "metrics.jsonl")
        # the step-0 row: validation of the untrained policy, before any training step
        assert log.records[0]["step"] == 0 and "val/accuracy" in log.records[0]
        assert log.last_step == 2
        assert (out / "logs" / f"{name}.log").is_file()
    noiqr = yaml.safe_load((out / "mg-noiqr-s0" / "config.yaml").read_text())["algorithm"]
    assert noiqr["preset"] == "m-grpo" and noiqr["iqr_k"] is None and noiqr["momentum"] == 0.9
    summary = json.loads((out / "summary.json").read_text())
    arms = {a["arm"]: a for a in summary["arms"]}
    assert set(arms) == {"srt", "mg-noiqr"}
    assert sorted(arms["srt"]["seeds"]) == [0, 1]
    for arm in arms.values():  # best includes the step-0 validation
        step0 = arm["start_val"]["values"]
        assert len(step0) == 2
        assert all(b >= s for b, s in zip(arm["best_val"]["values"], step0, strict=True))
    assert (out / "plots" / "val_accuracy.png").stat().st_size > 1000
    assert "| srt | 2 |" in (out / "summary.md").read_text()
    assert "| srt |" in (out / "scaling.md").read_text()

    second = compare(out, 3)  # one more step: every run resumes from its checkpoint
    assert second.returncode == 0, second.stderr[-3000:]
    assert second.stdout.count("resuming") == 4 and "already complete" not in second.stdout
    for name in names:
        log = read_metrics(out / name / "metrics.jsonl")
        assert [r["step"] for r in log.records] == [0, 1, 2, 3]

    third = compare(out, 3)
    assert third.returncode == 0, third.stderr[-3000:]
    assert third.stdout.count("already complete, skipped") == 4
