"""Merge the checks' JSON results into one summary.json.

    python -m gpu_checks.summary STATUS_FILE RESULTS_DIR OUT_JSON

STATUS_FILE has one line per check run by the shell: `name rc seconds` (rc 124 = timed
out; `name skipped 0` = not started, budget spent). A check that left no result (crash,
timeout) gets status FAIL / TIMEOUT / SKIPPED with no asserts. `validate(summary)` is the
schema the CI test checks.
"""

from __future__ import annotations

import json
import platform
import sys
from pathlib import Path

from gpu_checks.common import DEVICE, RESULT_KEYS, SMOKE, STATUSES

TOP_KEYS = ("device", "smoke", "versions", "gpu", "total_seconds", "passed", "checks")


def versions() -> dict:
    import torch
    import transformers

    return {"python": platform.python_version(), "torch": torch.__version__,
            "transformers": transformers.__version__}


def gpu_name() -> str | None:
    import torch

    return torch.cuda.get_device_name() if torch.cuda.is_available() else None


def merge(status_file: Path, results: Path) -> dict:
    checks = []
    for line in status_file.read_text().splitlines():
        name, rc, seconds = line.split()
        path = results / f"{name}.json"
        if path.is_file():
            result = json.loads(path.read_text())
            result["seconds"] = float(seconds)
            if rc not in ("0", "1") and result["status"] == "PASS":
                result["status"] = "FAIL"  # exited oddly after reporting
        else:
            status = {"124": "TIMEOUT", "137": "TIMEOUT", "skipped": "SKIPPED"}.get(rc, "FAIL")
            result = {"name": name, "status": status, "seconds": float(seconds),
                      "device": DEVICE, "smoke": SMOKE, "asserts": [], "figures": {},
                      "error": f"no result (exit {rc})"}
        result["exit"] = rc
        checks.append(result)
    return {"device": DEVICE, "smoke": SMOKE, "versions": versions(), "gpu": gpu_name(),
            "total_seconds": round(sum(c["seconds"] for c in checks), 1),
            "passed": bool(checks) and all(c["status"] == "PASS" for c in checks),
            "checks": checks}


def validate(summary: dict) -> None:
    """Raise ValueError unless `summary` has the summary.json schema."""
    missing = [k for k in TOP_KEYS if k not in summary]
    if missing:
        raise ValueError(f"summary.json: missing keys {missing}")
    for check in summary["checks"]:
        lost = [k for k in RESULT_KEYS if k not in check]
        if lost or check["status"] not in STATUSES:
            raise ValueError(f"summary.json: check {check.get('name')!r} bad ({lost}, "
                             f"{check.get('status')!r})")
        for a in check["asserts"]:
            if set(a) != {"name", "ok", "value", "limit"} or not isinstance(a["ok"], bool):
                raise ValueError(f"summary.json: check {check['name']!r}: bad assert {a}")


if __name__ == "__main__":
    status_file, results, out = map(Path, sys.argv[1:4])
    summary = merge(status_file, results)
    validate(summary)
    out.write_text(json.dumps(summary, indent=1, default=str))
    for c in summary["checks"]:
        print(f"{c['name']:<16} {c['status']:<8} {c['seconds']:>6.1f} s  "
              f"{sum(a['ok'] for a in c['asserts'])}/{len(c['asserts'])} asserts")
    print("ALL PASS" if summary["passed"] else "SOME CHECKS FAILED")
