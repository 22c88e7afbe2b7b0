"""Scaffolding shared by the GPU checks: device and size, asserts printed as PASS/FAIL lines,
one JSON result per check, the scratch directory, and the run configurations.

Environment (set by `benchmarks/gpu_checks.sh`):
    DEVICE         cuda (default) or cpu; cpu = smoke size (what a CI-like machine can run)
    SCRATCH        a directory deleted after the run (run directories, checkpoints)
    CHECK_RESULTS  where each check writes `<name>.json` (merged into summary.json)

A check body calls `check.expect(label, ok, value, limit)` for every assertion (one failed
assertion does not stop the others) and `check.record(...)` for figures; an exception ends
the body and fails the check, with the error in its result.
"""

from __future__ import annotations

import json
import os
import sys
import tempfile
import time
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any

DEVICE = os.environ.get("DEVICE", "cuda")
SMOKE = DEVICE == "cpu"
RESULT_KEYS = ("name", "status", "seconds", "device", "smoke", "asserts", "figures", "error")
STATUSES = ("PASS", "FAIL", "TIMEOUT", "SKIPPED")


def scratch(sub: str) -> Path:
    """A fresh directory `sub` under $SCRATCH (a temporary one when unset)."""
    root = Path(os.environ.get("SCRATCH") or tempfile.mkdtemp(prefix="gpu-checks-"))
    path = root / sub
    path.mkdir(parents=True, exist_ok=False)
    return path


def rounded(x: Any, digits: int = 5) -> Any:
    """Floats (also inside lists / dicts) rounded for the summary."""
    if isinstance(x, float):
        return round(x, digits)
    if isinstance(x, list | tuple):
        return [rounded(v, digits) for v in x]
    if isinstance(x, dict):
        return {k: rounded(v, digits) for k, v in x.items()}
    return x


class Check:
    """Assertions and figures of one check; `finish` prints the verdict and writes the JSON."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.asserts: list[dict[str, Any]] = []
        self.figures: dict[str, Any] = {}
        self.t0 = time.time()

    def expect(self, label: str, ok: bool, value: Any = None, limit: Any = None) -> bool:
        ok = bool(ok)
        self.asserts.append({"name": label, "ok": ok, "value": rounded(value),
                             "limit": rounded(limit)})
        print(f"{'PASS' if ok else 'FAIL'} {self.name}/{label}: value={rounded(value)} "
              f"limit={rounded(limit)}", flush=True)
        return ok

    def record(self, **figures: Any) -> None:
        self.figures.update(rounded(figures))
        for key, value in figures.items():
            print(f"  {self.name}.{key} = {json.dumps(rounded(value), default=str)}", flush=True)

    def finish(self, error: str | None = None) -> int:
        ok = error is None and bool(self.asserts) and all(a["ok"] for a in self.asserts)
        result = {
            "name": self.name, "status": "PASS" if ok else "FAIL",
            "seconds": round(time.time() - self.t0, 1), "device": DEVICE, "smoke": SMOKE,
            "asserts": self.asserts, "figures": self.figures, "error": error,
        }
        out = os.environ.get("CHECK_RESULTS")
        if out:
            Path(out).mkdir(parents=True, exist_ok=True)
            (Path(out) / f"{self.name}.json").write_text(json.dumps(result, indent=1, default=str))
        print(f"{result['status']} {self.name} ({result['seconds']} s)"
              + (f": {error}" if error else ""), flush=True)
        return 0 if ok else 1


def run_check(name: str, body: Callable[[Check], None]) -> int:
    """Run `body(check)`; an exception fails the check (traceback in the log)."""
    check = Check(name)
    try:
        body(check)
    except Exception as exc:  # noqa: BLE001 - every failure is reported, none propagates
        traceback.print_exc()
        return check.finish(error=f"{type(exc).__name__}: {exc}")
    return check.finish()


def main(name: str, body: Callable[[Check], None]) -> None:
    sys.exit(run_check(name, body))


def device():
    import torch

    return torch.device("cuda" if DEVICE != "cpu" else "cpu")


def qwen3_model_name() -> str:
    """The Qwen3-shaped random model: Qwen3-0.6B's shapes on a GPU, the smoke twin on CPU."""
    return "qwen3-random-smoke" if SMOKE else "qwen3-0.6b-random"


def qwen3_config(*overrides: str):
    """The `qwen3-0.6b-random` recipe on this device (smoke-sized on CPU) with `overrides`."""
    from mgrpo.config import resolve_config

    base = [f"model.name={qwen3_model_name()}", f"model.device={DEVICE}"]
    if SMOKE:
        base += ["generation.max_new_tokens=16", "trainer.prompts_per_step=2"]
    return resolve_config("qwen3-0.6b-random", [*base, *overrides])


def randomize_norms(model, seed: int = 0) -> None:
    """Every RMSNorm weight drawn in [0.5, 1.5] in place (all-ones norms hide stale copies)."""
    import torch

    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "norm" in name:
                p.copy_((0.5 + torch.rand(p.shape, generator=gen)).to(p.dtype))
