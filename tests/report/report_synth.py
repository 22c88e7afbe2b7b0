"""Synthetic run directories for tests/report (no trainer needed); imported by its tests."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import yaml


def synthetic_records(
    steps: int,
    *,
    seed: int = 0,
    collapse: bool = False,
    val_every: int = 10,
    labels: bool = True,
    momentum: bool = True,
) -> list[dict]:
    """Per-step metrics shaped like the trainer's (step numbering from 1).

    collapse=True: entropy, length fall to ~0 and vote share goes to 1 from mid-run, val
    accuracy peaks then falls while reward keeps rising (the SRT failure of the paper).
    """
    rng = np.random.default_rng(seed)
    records = []
    for step in range(1, steps + 1):
        t = step / steps
        if collapse:
            fade = 1.0 / (1.0 + np.exp(20 * (t - 0.5)))  # 1 -> 0 around mid-run
            entropy = 0.8 * fade + 0.01
            length = 200 * fade + 8
            vote = 1.0 - 0.4 * fade
            reward = 0.3 + 0.7 * t
            val = 0.3 + 0.3 * t if t < 0.5 else 0.45 - 0.4 * (t - 0.5)
        else:
            entropy = 0.8 - 0.3 * t
            length = 200 - 40 * t
            vote = 0.55 + 0.25 * t
            reward = 0.3 + 0.4 * t
            val = 0.3 + 0.3 * t
        r = {
            "step": step,
            "reward/mean": float(np.clip(reward + rng.normal(0, 0.05), 0, 1)),
            "label/vote_share": float(np.clip(vote + rng.normal(0, 0.03), 0, 1)),
            "label/none_fraction": 0.0,
            "entropy/policy": float(max(entropy + rng.normal(0, 0.04), 1e-4)),
            "entropy/momentum": float(max(entropy * 1.1 + rng.normal(0, 0.04), 1e-4))
            if momentum
            else 0.0,
            "filter/dropped_fraction": float(np.clip(0.1 + rng.normal(0, 0.02), 0, 1)),
            "response/length_mean": float(max(length + rng.normal(0, 10), 1)),
            "loss/pg": float(rng.normal(0, 0.01)),
            "loss/kl": float(0.001 * t + abs(rng.normal(0, 1e-4))),
            "grad_norm": float(abs(rng.normal(1, 0.1))),
            "lr": 1e-6,
            "time/generate": float(1.0 + abs(rng.normal(0, 0.1))),
            "time/vote": float(0.3 + abs(rng.normal(0, 0.03))),
            "time/train": float(0.8 + abs(rng.normal(0, 0.05))),
            "time/ema": 0.01,
        }
        r["time/step"] = r["time/generate"] + r["time/vote"] + r["time/train"] + r["time/ema"]
        if labels:
            r["label/accuracy"] = float(np.clip(val + 0.1 + rng.normal(0, 0.05), 0, 1))
            r["policy/accuracy"] = float(np.clip(val + rng.normal(0, 0.05), 0, 1))
        if val_every and step % val_every == 0:
            r["val/accuracy"] = float(np.clip(val + rng.normal(0, 0.01), 0, 1))
        records.append(r)
    return records


def write_run(
    path: Path,
    *,
    steps: int = 60,
    preset: str = "m-grpo",
    rollouts: int = 16,
    seed: int = 0,
    records: list[dict] | None = None,
    eval_results: dict | None = None,
    **kwargs,
) -> Path:
    path.mkdir(parents=True, exist_ok=True)
    config = {
        "seed": seed,
        "model": {"name": "tiny", "dtype": "float32"},
        "algorithm": {"preset": preset, "rollouts": rollouts, "momentum": 0.99, "iqr_k": 0.75},
        "trainer": {"max_steps": steps, "eval_every": 10},
    }
    (path / "config.yaml").write_text(yaml.safe_dump(config), encoding="utf-8")
    records = records if records is not None else synthetic_records(steps, seed=seed, **kwargs)
    with (path / "metrics.jsonl").open("w", encoding="utf-8") as f:
        for r in records:
            f.write(json.dumps(r) + "\n")
    if eval_results is not None:
        (path / "eval").mkdir(exist_ok=True)
        (path / "eval" / "results.json").write_text(json.dumps(eval_results), encoding="utf-8")
    return path
