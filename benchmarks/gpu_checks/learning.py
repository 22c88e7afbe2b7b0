"""Checks 3 and 4: training trains on the GPU, proved by paired controls on the same seed.

Each arm is `mgrpo train lab-collapse seed=0` on the lab model (the world `default`; the
cache carried in `.gpu-carry` is the one that produced the CPU references), two arms per
check, run at once (one process each, never more than two):

    paired   control   optim.lr=0: the same m-grpo run whose weights never move
             m-grpo    the recipe's label-free arm (G = 12 policy + 4 momentum)
    truth    grpo      algorithm.preset=grpo: reward = the hidden answer (the upper bound)
             grpo-fsdp the same under torchrun + FSDP2, one process

Criteria (GPU), every margin computed here from the committed CPU reference runs of the
same arms and recipe (`reference.json`: 40 steps each of control, m-grpo and grpo, seeds
0-2; how they were made is recorded in it):
- control does not move: its final policy weights equal the lab model's exactly, and its
  reward rise and validation change stay inside NOISE_SD standard deviations of their noise
  (the per-step spread of the CPU control runs, scaled to a difference of window means);
- m-grpo's reward rise (mean reward of the last WINDOW steps minus the first WINDOW) beats
  the control's by at least half the smallest paired difference of the CPU seeds (the two
  arms share the seed, so the prompts of every step and all of step 1 are the same);
- grpo and grpo-fsdp raise validation accuracy (mean of the last VAL_TAIL validation points
  minus step 0) by at least half the smallest rise of the CPU seeds, a margin the reference
  itself must show to be wider than the control's noise band;
- every arm exits 0 with finite metrics, its lab model is the reference's (model sha256),
  and no log says "CUDA graph capture failed" (the eager fallback is a FAIL here).
On CPU (smoke): 2 steps at smoke size; the margins are computed and printed, the mechanics
(exit, finite metrics, the model hash, the control's weights) asserted.
"""

from __future__ import annotations

import json
import math
import os
import shutil
import signal
import statistics
import subprocess
import sys
import time
from pathlib import Path

from gpu_checks.common import DEVICE, SMOKE, Check, main, scratch

HERE = Path(__file__).resolve().parent
REFERENCE = HERE / "reference.json"
CHECKS = {"paired": ("control", "m-grpo"), "truth": ("grpo", "grpo-fsdp")}
ARMS = {"control": ["optim.lr=0"], "m-grpo": [], "grpo": ["algorithm.preset=grpo"],
        "grpo-fsdp": ["algorithm.preset=grpo", "distributed.fsdp=true"]}
WINDOW, VAL_TAIL, NOISE_SD = 10, 3, 3.0
TIMEOUT_S = int(os.environ.get("LEARNING_TIMEOUT_S", "200"))
SMOKE_SIZE = ["trainer.max_steps=2", "trainer.eval_every=1", "trainer.prompts_per_step=2",
              "data.limit=16", "validation.limit=8", "validation.samples=2",
              "generation.max_new_tokens=16", "validation.max_new_tokens=16",
              "trainer.micro_batch_size=32", "trainer.threads=1"]
CAPTURE_FAILED = "CUDA graph capture failed"


def rows(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def curves(metrics: list[dict]) -> dict:
    """{"reward": per-step reward/mean, "val": [[step, accuracy in points], ...]}."""
    return {"reward": [r["reward/mean"] for r in metrics if r.get("reward/mean") is not None],
            "val": [[r["step"], 100 * r["val/accuracy"]] for r in metrics if "val/accuracy" in r]}


def reward_rise(c: dict) -> float:
    """Mean reward of the last WINDOW steps minus the first WINDOW."""
    r, k = c["reward"], min(WINDOW, len(c["reward"]) // 2 or 1)
    return sum(r[-k:]) / k - sum(r[:k]) / k


def val_rise(c: dict) -> float:
    """Mean of the last VAL_TAIL validation points minus step 0's (points)."""
    v = [a for _, a in c["val"]]
    tail = v[1:][-VAL_TAIL:] or v
    return sum(tail) / len(tail) - v[0]


def margins(reference: dict) -> dict:
    """The criteria's numbers, from the CPU reference runs (module docstring)."""
    runs = reference["runs"]
    seeds = {arm: sorted(k for k in runs if k.rsplit("-s", 1)[0] == arm)
             for arm in ("control", "m-grpo", "grpo")}
    control = [runs[k] for k in seeds["control"]]
    # per-step spread of a run that cannot move: pooled over the control seeds
    reward_sd = statistics.fmean(statistics.stdev(c["reward"]) for c in control)
    val_sd = statistics.fmean(statistics.stdev([a for _, a in c["val"]]) for c in control)
    paired = [reward_rise(runs[f"m-grpo-s{k.rsplit('-s', 1)[1]}"]) - reward_rise(runs[k])
              for k in seeds["control"] if f"m-grpo-s{k.rsplit('-s', 1)[1]}" in runs]
    grpo = [val_rise(runs[k]) for k in seeds["grpo"]]
    return {
        "control_reward_band": NOISE_SD * reward_sd * math.sqrt(2 / WINDOW),
        "control_val_band": NOISE_SD * val_sd * math.sqrt(1 + 1 / VAL_TAIL),
        "reward_margin": min(paired) / 2, "cpu_paired_reward_differences": paired,
        "val_margin": min(grpo) / 2, "cpu_grpo_val_rises": grpo,
        "cpu_mgrpo_reward_rises": [reward_rise(runs[k]) for k in seeds["m-grpo"]],
    }


def launch(arm: str, out: Path) -> subprocess.Popen:
    base = ["-m", "mgrpo", "train", "lab-collapse", "-o", str(out), "seed=0",
            f"model.device={DEVICE}", "trainer.progress=false", "trainer.save_every=0",
            *ARMS[arm], *(SMOKE_SIZE if SMOKE else [])]
    if "distributed.fsdp=true" in ARMS[arm]:
        base = ["-m", "torch.distributed.run", "--standalone", "--nproc_per_node=1", *base]
    cmd = [sys.executable, *base]
    log = open(out.parent / f"{arm}.log", "w")  # noqa: SIM115 - closed with the process
    print("$", " ".join(cmd), flush=True)
    return subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env=dict(os.environ))


def lab_model_sha() -> str | None:
    from mgrpo.lab import lab_info

    info = lab_info()
    return None if info is None else info["files"]["model.safetensors"]


def weights_moved(run_dir: Path) -> float:
    """max |final policy weight - lab model weight| (the fp32 master where one was saved)."""
    from safetensors.torch import load_file

    from mgrpo.lab import lab_model_path
    from mgrpo.train.run.checkpoint import latest_checkpoint

    ckpt = latest_checkpoint(run_dir / "checkpoints")
    start = load_file(str(lab_model_path() / "model.safetensors"))
    master = ckpt / "master.safetensors"
    final = load_file(str(master if master.is_file() else ckpt / "model.safetensors"))
    common = [k for k in start if k in final]
    if not common:
        raise ValueError(f"{ckpt}: no tensor in common with the lab model")
    return max(float((final[k].double() - start[k].double()).abs().max()) for k in common)


def body(check: Check, which: str) -> None:
    reference = json.loads(REFERENCE.read_text())
    m = margins(reference)
    check.record(margins=m, reference={k: reference[k] for k in ("recipe", "steps", "made")})
    check.expect("cpu_reference_grpo_margin_above_control_noise",
                 m["val_margin"] > m["control_val_band"], m["val_margin"],
                 f"> {m['control_val_band']:.2f} points")
    sha = lab_model_sha()
    if sha is None:
        check.expect("lab_model_is_the_reference", False, "no lab model cached",
                     "carry .gpu-carry (benchmarks/gpu_carry.sh)")
    else:
        check.expect("lab_model_is_the_reference", sha == reference["lab_model_sha256"],
                     sha[:16], reference["lab_model_sha256"][:16])
    root = scratch(f"learning-{which}")
    arms = CHECKS[which]
    procs = {arm: launch(arm, root / arm) for arm in arms}

    def stop(signum, frame):  # the shell's timeout: take the training processes along
        for proc in procs.values():
            proc.kill()
        sys.exit(124)

    signal.signal(signal.SIGTERM, stop)
    deadline = time.time() + TIMEOUT_S
    got = {}
    for arm, proc in procs.items():
        try:
            rc = proc.wait(timeout=max(1, deadline - time.time()))
        except subprocess.TimeoutExpired:
            proc.kill()
            rc = "timeout"
        log = (root / f"{arm}.log").read_text(errors="replace")
        check.expect(f"{arm}_trained", rc == 0, rc, "exit 0")
        check.expect(f"{arm}_no_graph_capture_fallback", CAPTURE_FAILED not in log,
                     CAPTURE_FAILED in log, "no capture failure")
        if rc != 0:
            print(log[-3000:], flush=True)
        path = root / arm / "metrics.jsonl"
        if path.is_file():
            got[arm] = curves(rows(path))
            finite = all(math.isfinite(x) for x in got[arm]["reward"])
            check.expect(f"{arm}_metrics_finite", finite and bool(got[arm]["reward"]),
                         len(got[arm]["reward"]))
    check.record(curves=got)
    keep = Path(os.environ.get("SCRATCH", root.parent)) / "logs" / f"learning-{which}"
    keep.mkdir(parents=True, exist_ok=True)  # logs and metrics only: they go into logs.tar.gz
    for arm in arms:
        for src in (root / f"{arm}.log", root / arm / "metrics.jsonl"):
            if src.is_file():
                shutil.copy(src, keep / (src.name if src.suffix == ".log" else f"{arm}.jsonl"))
    if "control" in got:
        moved = weights_moved(root / "control")
        check.expect("control_weights_do_not_move", moved == 0.0, moved, 0.0)
    if SMOKE or len(got) < len(arms):
        return
    if which == "paired":
        control, arm = reward_rise(got["control"]), reward_rise(got["m-grpo"])
        check.record(control_reward_rise=control, mgrpo_reward_rise=arm,
                     control_val_change=val_rise(got["control"]))
        check.expect("control_reward_flat", abs(control) <= m["control_reward_band"], control,
                     f"|rise| <= {m['control_reward_band']:.3f}")
        check.expect("control_val_flat", abs(val_rise(got["control"])) <= m["control_val_band"],
                     val_rise(got["control"]), f"|change| <= {m['control_val_band']:.2f}")
        check.expect("mgrpo_reward_rise_beats_control", arm - control >= m["reward_margin"],
                     arm - control, f">= {m['reward_margin']:.3f}")
    else:
        for name in arms:
            rise = val_rise(got[name])
            check.expect(f"{name}_val_rises", rise >= m["val_margin"], rise,
                         f">= {m['val_margin']:.2f} points")


if __name__ == "__main__":
    which = sys.argv[1] if len(sys.argv) > 1 else "paired"
    if which not in CHECKS:
        sys.exit(f"usage: python -m gpu_checks.learning [{' | '.join(CHECKS)}]")
    main(f"learning_{which}", lambda c: body(c, which))
