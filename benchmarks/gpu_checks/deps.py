"""Check 0, the dependency gate: can this machine run the checks at all? (~10 s)

Imports every package `mgrpo` needs (REQUIRED) and the optional ones the checks use
(OPTIONAL_MODULES), records each version and the GPU (name, memory, compute capability,
CUDA), starts one math-verify worker (the answer checker the lab runs grade with), and on a
GPU run asserts CUDA is usable. A missing required package fails the gate with a message
naming it and how to bring it (`benchmarks/gpu_carry.sh` builds a wheelhouse here; the
shell installs it there before this gate runs again); `benchmarks/gpu_checks.sh` stops when
the gate fails. A missing optional package is recorded and only skips what needs it.
"""

from __future__ import annotations

import importlib
import importlib.metadata
import sys
import time

from gpu_checks.common import DEVICE, OPTIONAL, Check, main

# import name -> distribution name (what pip installs)
REQUIRED = {"torch": "torch", "transformers": "transformers", "tokenizers": "tokenizers",
            "safetensors": "safetensors", "math_verify": "math-verify", "yaml": "pyyaml",
            "tqdm": "tqdm", "numpy": "numpy", "scipy": "scipy", "matplotlib": "matplotlib",
            "tensorboard": "tensorboard"}
OPTIONAL_MODULES = {"peft": "peft", "accelerate": "accelerate"}
CARRY_HINT = ("build the wheelhouse here with `bash benchmarks/gpu_carry.sh` (pip download "
              "--only-binary=:all: for the device's Python) and carry `.gpu-carry`: "
              "benchmarks/gpu_checks.sh installs its wheels before the gate "
              "(docs/algorithm-notes.md, 'The GPU device check')")


def missing_required() -> list[str]:
    """Distributions of REQUIRED whose module is not importable (found without importing
    anything: the shell asks before it installs the carried wheels)."""
    import importlib.util

    return [dist for module, dist in REQUIRED.items()
            if importlib.util.find_spec(module) is None]


def _version(module: str, dist: str) -> str:
    try:
        return importlib.metadata.version(dist)
    except importlib.metadata.PackageNotFoundError:
        return str(getattr(sys.modules.get(module), "__version__", "unknown"))


def _import(module: str) -> str | None:
    """None when `module` imports, else the error in one line."""
    try:
        importlib.import_module(module)
    except Exception as exc:  # noqa: BLE001 - any import failure is what the gate reports
        return f"{type(exc).__name__}: {exc}".splitlines()[0][:200]
    return None


def _gpu() -> dict:
    import torch

    if not torch.cuda.is_available():
        return {"available": False, "torch_cuda": torch.version.cuda}
    props = torch.cuda.get_device_properties(0)
    return {"available": True, "name": props.name, "count": torch.cuda.device_count(),
            "memory_gib": round(props.total_memory / 2**30, 1),
            "capability": f"{props.major}.{props.minor}", "torch_cuda": torch.version.cuda}


def body(check: Check) -> None:
    versions, missing, seconds = {"python": sys.version.split()[0]}, {}, {}
    for module, dist in {**REQUIRED, **OPTIONAL_MODULES}.items():
        t0 = time.perf_counter()
        error = _import(module)
        seconds[module] = round(time.perf_counter() - t0, 2)
        if error is None:
            versions[dist] = _version(module, dist)
        else:
            missing[dist] = error
    required_missing = {d: e for d, e in missing.items() if d in REQUIRED.values()}
    optional_missing = {d: e for d, e in missing.items() if d not in REQUIRED.values()}
    mgrpo_error = _import("mgrpo.train.run.trainer")
    check.record(versions=versions, import_seconds=seconds, missing=missing)
    check.expect("required_packages_import", not required_missing,
                 sorted(required_missing) or "all", "all of " + ", ".join(REQUIRED.values()))
    if required_missing:
        print(f"MISSING on this machine: {', '.join(sorted(required_missing))}. "
              f"To bring them: {CARRY_HINT}.", flush=True)
    check.expect("mgrpo_imports", mgrpo_error is None, mgrpo_error, "imports (PYTHONPATH=src)")
    for dist in sorted(optional_missing):
        check.skip(f"optional_{dist}", f"{dist} is not installed: "
                   f"{OPTIONAL.get(dist, 'only what needs it is skipped')}")
    if "torch" not in required_missing:
        gpu = _gpu()
        check.record(gpu=gpu)
        if DEVICE != "cpu":
            check.expect("cuda_available", gpu["available"], gpu, "a CUDA device")
    if "math-verify" not in required_missing and mgrpo_error is None:
        from mgrpo.answers import AnswerChecker

        t0 = time.perf_counter()
        checker = AnswerChecker(workers=1)
        try:  # not an exact match: goes to a math-verify worker process
            ok = checker.equivalent("\\frac{1}{2}", "0.5")
        finally:
            checker.close()
        check.record(math_verify_worker_seconds=round(time.perf_counter() - t0, 2))
        check.expect("math_verify_worker_answers", ok, ok, True)


if __name__ == "__main__":
    if sys.argv[1:] == ["--missing"]:
        print(" ".join(missing_required()))
    else:
        main("deps", body)
