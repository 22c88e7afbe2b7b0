"""Checks 3 and 4: training trains, on the lab model, against committed CPU reference curves.

`mgrpo train lab-collapse` seed 0, two arms run at once (one process each): srt, and m-grpo
with algorithm.momentum_rollouts=8. `--fsdp` runs both under torchrun with FSDP over one
process. Criteria (the lab-collapse regime, docs/lab-study.md), each asserted on the run
and, as a sanity check of the criteria themselves, on the CPU reference
(docs/lab-study/runs/srt-s0 and m-grpo-N8-s0: `mgrpo train lab-collapse` seed 0, 40 steps,
on CPU; their metrics.jsonl are read here, not copied):
- srt: the training reward rises by >= REWARD_RISE (mean of the last 5 steps minus the mean
  of the first 5) and validation accuracy falls by >= VAL_FALL points (start minus final);
- m-grpo N = 8: final validation accuracy within HOLD points of its start;
- each run's final validation accuracy within MATCH points of the CPU reference's final.
On CPU (smoke): 2 steps at smoke size; the criteria are computed and printed but only the
mechanics are asserted (metrics written, finite) with the reference's criteria.
"""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
import time
from pathlib import Path

from gpu_checks.common import DEVICE, SMOKE, Check, main, scratch

REPO = Path(__file__).resolve().parents[2]
REFERENCE = REPO / "docs" / "lab-study" / "runs"
ARMS = {"srt": ["algorithm.preset=srt"],
        "m-grpo-N8": ["algorithm.preset=m-grpo", "algorithm.momentum_rollouts=8"]}
REFERENCE_RUNS = {"srt": "srt-s0", "m-grpo-N8": "m-grpo-N8-s0"}
REWARD_RISE, VAL_FALL, HOLD, MATCH = 0.08, 5.0, 8.0, 10.0
TIMEOUT_S = int(os.environ.get("LEARNING_TIMEOUT_S", "400"))
SMOKE_SIZE = ["trainer.max_steps=2", "trainer.eval_every=1", "trainer.prompts_per_step=2",
              "data.limit=16", "validation.limit=8", "validation.samples=2",
              "generation.max_new_tokens=16", "validation.max_new_tokens=16",
              "trainer.micro_batch_size=32", "trainer.threads=1"]


def rows(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def curve_stats(metrics: list[dict]) -> dict:
    """Start / final validation accuracy (points), reward means of the first / last 5 steps."""
    val = [(r["step"], 100 * r["val/accuracy"]) for r in metrics if "val/accuracy" in r]
    reward = [r["reward/mean"] for r in metrics if r.get("reward/mean") is not None]
    k = min(5, len(reward))
    return {"val_start": val[0][1] if val else None, "val_final": val[-1][1] if val else None,
            "val_curve": val, "reward_first5": sum(reward[:k]) / max(k, 1),
            "reward_last5": sum(reward[-k:]) / max(k, 1), "steps": len(reward),
            "finite": all(isinstance(v, int | float) and math.isfinite(v)
                          for r in metrics for v in r.values() if isinstance(v, float))}


def criteria(arm: str, s: dict) -> dict[str, tuple[bool, float, str]]:
    if arm == "srt":
        rise = s["reward_last5"] - s["reward_first5"]
        fall = s["val_start"] - s["val_final"]
        return {"reward_rises": (rise >= REWARD_RISE, rise, f">= {REWARD_RISE}"),
                "val_falls": (fall >= VAL_FALL, fall, f">= {VAL_FALL} points")}
    drift = abs(s["val_final"] - s["val_start"])
    return {"val_holds": (drift <= HOLD, drift, f"<= {HOLD} points")}


def launch(arm: str, out: Path, fsdp: bool) -> subprocess.Popen:
    cmd = [sys.executable, "-m", "mgrpo", "train", "lab-collapse", "-o", str(out), "seed=0",
           f"model.device={DEVICE}", "trainer.progress=false", "trainer.save_every=0", *ARMS[arm]]
    if fsdp:
        cmd[1:2] = ["-m", "torch.distributed.run", "--standalone", "--nproc_per_node=1",
                    "-m"]
        cmd += ["distributed.fsdp=true"]
    if SMOKE:
        cmd += SMOKE_SIZE
    env = dict(os.environ, OMP_NUM_THREADS=os.environ.get("OMP_NUM_THREADS", "2"))
    log = open(out.parent / f"{arm}.log", "w")  # noqa: SIM115 - closed with the process
    print("$", " ".join(cmd), flush=True)
    return subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env=env)


def body(check: Check, fsdp: bool) -> None:
    root = scratch("learning-fsdp" if fsdp else "learning")
    procs = {arm: launch(arm, root / arm, fsdp) for arm in ARMS}
    deadline = time.time() + TIMEOUT_S
    for arm, proc in procs.items():
        try:
            rc = proc.wait(timeout=max(1, deadline - time.time()))
        except subprocess.TimeoutExpired:
            proc.kill()
            rc = "timeout"
        check.expect(f"{arm}_trained", rc == 0, rc, "exit 0")
        if rc != 0:
            print((root / f"{arm}.log").read_text()[-3000:], flush=True)
    for arm in ARMS:
        ref = curve_stats(rows(REFERENCE / REFERENCE_RUNS[arm] / "metrics.jsonl"))
        for name, (ok, value, limit) in criteria(arm, ref).items():
            check.expect(f"cpu_reference_{arm}_{name}", ok, value, limit)
        path = root / arm / "metrics.jsonl"
        if not path.is_file():
            check.expect(f"{arm}_metrics_written", False, str(path))
            continue
        got = curve_stats(rows(path))
        check.record(**{f"{arm}_run": got, f"{arm}_cpu_reference": {
            "file": str((REFERENCE / REFERENCE_RUNS[arm]).relative_to(REPO)),
            **{k: ref[k] for k in ("val_start", "val_final", "reward_first5", "reward_last5")}}})
        check.expect(f"{arm}_metrics_finite", got["finite"] and got["steps"] > 0, got["steps"])
        if SMOKE:
            continue
        for name, (ok, value, limit) in criteria(arm, got).items():
            check.expect(f"{arm}_{name}", ok, value, limit)
        gap = abs(got["val_final"] - ref["val_final"])
        check.expect(f"{arm}_final_val_matches_cpu", gap <= MATCH, gap, f"<= {MATCH} points")


if __name__ == "__main__":
    fsdp = "--fsdp" in sys.argv
    main("learning_fsdp" if fsdp else "learning", lambda c: body(c, fsdp))
