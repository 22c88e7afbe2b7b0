"""Helpers for the reliability tests: `mgrpo train tiny` subprocesses, kills, comparisons."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import torch

# Every invocation of a lineage uses exactly these overrides (resume requires the same config).
COMMON = [
    "trainer.progress=false", "trainer.threads=1", "trainer.max_steps=3", "trainer.save_every=1",
    "validation.limit=2",
]
MAX_STEPS = 3
RUN_TIMEOUT_S = 300


def env(**extra: str) -> dict[str, str]:
    out = {**os.environ, "PYTHONHASHSEED": "0", "OMP_NUM_THREADS": "1", "TOKENIZERS_PARALLELISM": "false"}
    out.pop("MGRPO_FAULT", None)
    out.update(extra)
    return out


def train_cmd(out: Path, *extra: str) -> list[str]:
    resume = ["--resume"] if (out / "config.yaml").exists() else []
    return [sys.executable, "-m", "mgrpo", "train", "tiny", "-o", str(out), *resume, *COMMON, *extra]


def run_train(out: Path, *extra: str, fault: str | None = None, timeout: float = RUN_TIMEOUT_S,
              extra_env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    """One invocation (`--resume` when the run directory already holds a config)."""
    e = env(**(extra_env or {}))
    if fault:
        e["MGRPO_FAULT"] = fault
    return subprocess.run(train_cmd(out, *extra), capture_output=True, text=True, timeout=timeout, env=e)


def run_killed_after(out: Path, delay_s: float, *, sig: int = signal.SIGKILL, group: bool = False,
                     wait_for: str = "config.yaml") -> tuple[int, str]:
    """Start an invocation; `delay_s` after `out/wait_for` appears, send `sig` (to the whole
    process group when `group`, as Ctrl-C does). Returns (returncode, stderr)."""
    proc = subprocess.Popen(train_cmd(out), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                            text=True, env=env(), start_new_session=True)
    deadline = time.monotonic() + RUN_TIMEOUT_S
    marker = out / wait_for
    while not marker.exists() and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.02)
    fire_at = time.monotonic() + delay_s
    while proc.poll() is None and time.monotonic() < fire_at:
        time.sleep(0.01)
    if proc.poll() is None:
        if group:
            os.killpg(proc.pid, sig)
        else:
            proc.send_signal(sig)
    _, err = proc.communicate(timeout=RUN_TIMEOUT_S)
    return proc.returncode, err


def metrics(run: Path) -> list[dict]:
    return [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]


def untimed(rows: list[dict]) -> list[dict]:
    return [{k: v for k, v in r.items() if not k.startswith("time/")} for r in rows]


def tensors(path: Path) -> dict[str, torch.Tensor]:
    from safetensors.torch import load_file

    return load_file(str(path))


def assert_same_run(reference: Path, run: Path) -> None:
    """Metrics (time/* excluded) and the final policy + momentum weights are identical."""
    assert untimed(metrics(run)) == untimed(metrics(reference))
    final = f"step-{MAX_STEPS}"
    for name in ("model.safetensors", "momentum.safetensors", "optimizer.safetensors"):
        a = tensors(reference / "checkpoints" / final / name)
        b = tensors(run / "checkpoints" / final / name)
        assert a.keys() == b.keys(), name
        for key in a:
            assert torch.equal(a[key], b[key]), f"{name}:{key}"


def checkpoint_steps(run: Path) -> list[int]:
    root = run / "checkpoints"
    if not root.is_dir():
        return []
    return sorted(int(p.name.split("-")[1]) for p in root.iterdir() if p.name.startswith("step-"))
