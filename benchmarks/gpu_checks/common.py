"""Scaffolding shared by the GPU checks: device and size, asserts printed as PASS/FAIL lines,
one JSON result per check, the scratch directory, and the run configurations.

Environment (set by `benchmarks/gpu_checks.sh`):
    DEVICE         cuda (default) or cpu; cpu = smoke size (what a CI-like machine can run)
    SCRATCH        a directory deleted after the run (run directories, checkpoints)
    CHECK_RESULTS  where each check writes `<name>.json` (merged into summary.json)

A check body calls `check.expect(label, ok, value, limit)` for every assertion (one failed
assertion does not stop the others), `check.skip(label, reason)` for an assertion it cannot
make here (an optional package absent: SKIP with the reason, never FAIL) and
`check.record(...)` for figures; an exception ends the body and fails the check, with the
error in its result. A check whose assertions all passed or skipped passes (its skips are
listed); one with nothing but skips is SKIP.
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
RESULT_KEYS = ("name", "status", "seconds", "device", "smoke", "asserts", "figures", "error",
               "skipped")
STATUSES = ("PASS", "FAIL", "TIMEOUT", "SKIP")
# optional packages: a check that needs one and finds it absent skips that part
OPTIONAL = {"peft": "LoRA (pip install 'mgrpo[lora]')"}


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
        self.skipped: list[dict[str, str]] = []
        self.figures: dict[str, Any] = {}
        self.t0 = time.time()

    def expect(self, label: str, ok: bool, value: Any = None, limit: Any = None) -> bool:
        ok = bool(ok)
        self.asserts.append({"name": label, "ok": ok, "value": rounded(value),
                             "limit": rounded(limit)})
        print(f"{'PASS' if ok else 'FAIL'} {self.name}/{label}: value={rounded(value)} "
              f"limit={rounded(limit)}", flush=True)
        self._write(self._result(None))  # a check cut off at its limit keeps what it asserted
        return ok

    def skip(self, label: str, reason: str) -> None:
        """An assertion this machine cannot make (e.g. its optional package is absent)."""
        self.skipped.append({"name": label, "reason": reason})
        print(f"SKIP {self.name}/{label}: {reason}", flush=True)
        self._write(self._result(None))

    def record(self, **figures: Any) -> None:
        self.figures.update(rounded(figures))
        for key, value in figures.items():
            print(f"  {self.name}.{key} = {json.dumps(rounded(value), default=str)}", flush=True)

    def _result(self, error: str | None) -> dict[str, Any]:
        ok = error is None and all(a["ok"] for a in self.asserts)
        status = "FAIL" if not ok else "PASS" if self.asserts else "SKIP" if self.skipped else "FAIL"
        return {
            "name": self.name, "status": status,
            "seconds": round(time.time() - self.t0, 1), "device": DEVICE, "smoke": SMOKE,
            "asserts": self.asserts, "figures": self.figures, "error": error,
            "skipped": self.skipped,
        }

    def _write(self, result: dict[str, Any]) -> None:
        """`$CHECK_RESULTS/<name>.json`, replaced atomically."""
        out = os.environ.get("CHECK_RESULTS")
        if out:
            Path(out).mkdir(parents=True, exist_ok=True)
            tmp = Path(out) / f".{self.name}.json.tmp"
            tmp.write_text(json.dumps(result, indent=1, default=str))
            os.replace(tmp, Path(out) / f"{self.name}.json")

    def finish(self, error: str | None = None) -> int:
        result = self._result(error)
        self._write(result)
        print(f"{result['status']} {self.name} ({result['seconds']} s)"
              + (f": {error}" if error else ""), flush=True)
        return 0 if result["status"] != "FAIL" else 1


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


def missing_optional(module: str) -> str | None:
    """None when the optional `module` imports, else why it is skipped (what provides it)."""
    import importlib.util

    if importlib.util.find_spec(module) is not None:
        return None
    return f"{module} is not installed ({OPTIONAL.get(module, 'optional')})"


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
