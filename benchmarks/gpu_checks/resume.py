"""Check 6: stop + resume. Three runs of `mgrpo train lab-collapse` (m-grpo, seed 0) on the
lab model: straight for STEPS steps; stopped after STOP (trainer.stop_after); that run
continued with --resume. Checkpoints live in the scratch directory.

Asserts: (a) exact restore: the stopped run's checkpoint, restored in this process by the
trainer's own restore, gives policy tensors and momentum tensors bit-equal to the files (the
policy against every checkpoint tensor of the same name and dtype: the HF weights, or the
fp32 master of a mixed-precision run); (b) the resumed run's metrics at steps STOP+1..STEPS
equal the straight run's within METRIC_TOL (absolute, on reward/mean and val/accuracy; a GPU
is not bit-deterministic across processes), and on CPU exactly, with the final checkpoints'
tensors bit-equal (on a GPU their max |difference| is reported).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import torch

from gpu_checks.common import DEVICE, SMOKE, Check, main, scratch

STEPS, STOP = (2, 1) if SMOKE else (6, 3)
METRIC_TOL = 0.1
KEYS = ("reward/mean", "val/accuracy")
SIZE = (["trainer.prompts_per_step=2", "data.limit=16", "validation.limit=8",
         "validation.samples=2", "generation.max_new_tokens=16", "validation.max_new_tokens=16",
         "trainer.threads=1"] if SMOKE else [])


CAPTURE_FAILED = "CUDA graph capture failed"
FALLBACKS: list[str] = []  # runs whose output reported the eager fallback


def _train(out: Path, *extra: str) -> int:
    cmd = [sys.executable, "-m", "mgrpo", "train", "lab-collapse", "-o", str(out), "seed=0",
           f"model.device={DEVICE}", "trainer.progress=false", f"trainer.max_steps={STEPS}",
           "trainer.save_every=0", f"trainer.eval_every={STOP}", *SIZE, *extra]
    print("$", " ".join(cmd), flush=True)
    done = subprocess.run(cmd, capture_output=True, text=True, env=dict(os.environ))
    if done.returncode:
        print(done.stdout[-2000:], done.stderr[-3000:], flush=True)
    if CAPTURE_FAILED in done.stdout + done.stderr:
        FALLBACKS.append(" ".join(extra) or "straight")
    return done.returncode


def _tensors(ckpt: Path) -> dict[str, torch.Tensor]:
    from safetensors.torch import load_file

    out: dict[str, torch.Tensor] = {}
    for f in sorted(ckpt.rglob("*.safetensors")):
        for name, t in load_file(str(f)).items():
            out.setdefault(f"{f.relative_to(ckpt)}::{name}", t)
    return out


def _exact_restore(check: Check, run_dir: Path) -> None:
    from mgrpo.config import resolve_config
    from mgrpo.train.run.checkpoint import latest_checkpoint
    from mgrpo.train.run.resume import restore_run as restore
    from mgrpo.train.run.setup import build_run

    ckpt = latest_checkpoint(run_dir / "checkpoints")
    cfg = resolve_config(str(run_dir / "config.yaml"))
    run = build_run(cfg, run_dir, resume=True)
    restore(run, ckpt)
    files = _tensors(ckpt)
    by_name: dict[str, list[torch.Tensor]] = {}
    for key, t in files.items():  # the weights files (not the momentum / optimizer state)
        if "momentum" not in key and "optimizer" not in key:
            by_name.setdefault(key.split("::", 1)[1], []).append(t)
    compared = differing = 0
    for name, p in run.models.policy.named_parameters():
        for saved in by_name.get(name, []):
            if saved.dtype == p.dtype and saved.shape == p.shape:
                compared += 1
                differing += int(not torch.equal(saved, p.detach().cpu()))
    check.expect("restored_policy_equals_checkpoint", compared > 0 and differing == 0,
                 {"compared": compared, "differing": differing}, "0 differing")
    if run.models.momentum is not None:
        saved = {k.split("::", 1)[1]: t for k, t in files.items() if "momentum" in k}
        state = run.models.momentum.state_dict()
        bad = [n for n, t in state.items() if n in saved and not torch.equal(saved[n], t.cpu())]
        check.expect("restored_momentum_equals_checkpoint",
                     bool(saved) and not bad and set(saved) <= set(state),
                     {"compared": len(saved), "differing": len(bad)}, "0 differing")


def body(check: Check) -> None:
    root = scratch("resume")
    straight, paused = root / "straight", root / "paused"
    check.expect("straight_run", _train(straight) == 0)
    check.expect("stopped_run", _train(paused, f"trainer.stop_after={STOP}") == 0)
    _exact_restore(check, paused)
    check.expect("resumed_run", _train(paused, "--resume") == 0)
    a = {r["step"]: r for r in map(json.loads, (straight / "metrics.jsonl").read_text().split("\n")[:-1])}
    b = {r["step"]: r for r in map(json.loads, (paused / "metrics.jsonl").read_text().split("\n")[:-1])}
    diffs = {}
    for step in range(STOP + 1, STEPS + 1):
        for key in KEYS:
            if key in a.get(step, {}) and key in b.get(step, {}):
                diffs[f"{step}:{key}"] = abs(a[step][key] - b[step][key])
    worst = max(diffs.values(), default=float("nan"))
    check.record(metric_differences=diffs)
    check.expect("resumed_metrics_match", bool(diffs) and worst <= (0.0 if SMOKE else METRIC_TOL),
                 worst, 0.0 if SMOKE else METRIC_TOL)
    fa = _tensors(sorted((straight / "checkpoints").iterdir())[-1])
    fb = _tensors(sorted((paused / "checkpoints").iterdir())[-1])
    common = [k for k in fa if k in fb and fa[k].shape == fb[k].shape]
    delta = max((float((fa[k].double() - fb[k].double()).abs().max()) for k in common
                 if fa[k].is_floating_point()), default=float("nan"))
    check.record(final_checkpoint_tensors=len(common), final_checkpoint_max_abs_diff=delta)
    if DEVICE == "cpu":
        check.expect("final_checkpoints_bit_equal", bool(common) and delta == 0.0, delta, 0.0)
    check.expect("no_graph_capture_fallback", not FALLBACKS, FALLBACKS, "no capture failure")


if __name__ == "__main__":
    main("resume", body)
