"""The vllm engine learns like the fast one: 40 steps of the lab-collapse regime with the
ground-truth preset (`algorithm.preset=grpo`), seeds 0, 1 and 2, each engine. Validation
accuracy (128 held-out lab problems, 4 samples each) must rise over the run on every seed with
vllm, and the mean final accuracy over the seeds must be within noise of fast's: within
MAX_GAP, or twice the seed-to-seed standard deviation of the paired differences if larger.

Slow (six 40-step runs, two at a time; measured in docs/engines.md): `.ci/run` runs it
explicitly with `-m 'vllm and slow'` in the vLLM environment."""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
from pathlib import Path

import pytest

from mgrpo.rollout.vllm_engine import vllm_unavailable_reason

REASON = vllm_unavailable_reason()
pytestmark = [pytest.mark.vllm, pytest.mark.slow,
              pytest.mark.skipif(REASON is not None, reason=REASON or ""),
              pytest.mark.timeout(5400)]

SEEDS = (0, 1, 2)
ENGINES = ("fast", "vllm")
MAX_GAP = 0.05  # |mean final val accuracy (vllm) - (fast)| allowed before noise is consulted
JOBS = 2


def _command(engine: str, seed: int, out: Path) -> list[str]:
    return [sys.executable, "-m", "mgrpo", "train", "lab-collapse", "-o", str(out),
            "algorithm.preset=grpo", f"model.engine={engine}", f"seed={seed}",
            "trainer.progress=false", "trainer.threads=1"]


def _val(run: Path) -> dict[int, float]:
    rows = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    return {r["step"]: r["val/accuracy"] for r in rows if "val/accuracy" in r}


def test_lab_collapse_grpo_learns_with_vllm_as_with_fast(tmp_path):
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    todo = [(e, s) for s in SEEDS for e in ENGINES]
    running: list[tuple[tuple[str, int], subprocess.Popen]] = []
    while todo or running:
        while todo and len(running) < JOBS:
            engine, seed = todo.pop(0)
            out = tmp_path / f"{engine}-s{seed}"
            log = open(tmp_path / f"{engine}-s{seed}.log", "w")  # noqa: SIM115 - closed at exit
            running.append(((engine, seed), subprocess.Popen(
                _command(engine, seed, out), env=env, stdout=log, stderr=subprocess.STDOUT)))
        (key, proc), *running = running
        assert proc.wait() == 0, (tmp_path / f"{key[0]}-s{key[1]}.log").read_text()[-3000:]
    curves = {(e, s): _val(tmp_path / f"{e}-s{s}") for e in ENGINES for s in SEEDS}
    for (engine, seed), curve in curves.items():
        print(engine, seed, {k: round(v, 3) for k, v in sorted(curve.items())})
    for seed in SEEDS:  # rises on every seed
        curve = curves[("vllm", seed)]
        assert curve[40] > curve[0], (seed, curve)
    final = {e: [curves[(e, s)][40] for s in SEEDS] for e in ENGINES}
    gaps = [v - f for v, f in zip(final["vllm"], final["fast"])]
    allowed = max(MAX_GAP, 2 * statistics.stdev(gaps))
    assert abs(statistics.mean(gaps)) <= allowed, (final, gaps)
