"""Merge the checks' JSON results into one summary.json (run after every check, so a run
killed at any point still leaves the results of the checks that finished).

    python -m gpu_checks.summary STATUS_FILE RESULTS_DIR OUT_JSON [BUDGET_S]

STATUS_FILE has one line per check the shell started: `name rc seconds` (rc 124/137 = timed
out; `name skipped 0` = not started, the budget spent; `name running 0` = started, not
finished yet). A check that left no result (crash, timeout) gets FAIL / TIMEOUT / SKIP with
no asserts. `passed`: every check PASS, or SKIP for want of something optional (a check
not started for the budget is a SKIP that fails the run). Versions and the GPU come from
the dependency gate's result (`deps`), so this
imports no ML library and takes well under a second. The file is replaced atomically.
`validate(summary)` is the schema the CI test checks.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

from gpu_checks.common import DEVICE, RESULT_KEYS, SMOKE, STATUSES

TOP_KEYS = ("device", "smoke", "versions", "gpu", "total_seconds", "budget_seconds", "passed",
            "complete", "skips", "checks")


def _missing(name: str, rc: str, seconds: str) -> dict:
    status = {"124": "TIMEOUT", "137": "TIMEOUT", "skipped": "SKIP",
              "running": "TIMEOUT"}.get(rc, "FAIL")
    error = {"skipped": "not started: the time budget was spent",
             "running": "still running when the summary was written"}.get(rc, f"no result (exit {rc})")
    return {"name": name, "status": status, "seconds": float(seconds), "device": DEVICE,
            "smoke": SMOKE, "asserts": [], "figures": {}, "error": error, "skipped": []}


def merge(status_file: Path, results: Path, budget: float | None = None) -> dict:
    """The summary of every check named in `status_file` (the last line of each name wins)."""
    lines: dict[str, tuple[str, str]] = {}
    for line in status_file.read_text().splitlines():
        if line.strip():
            name, rc, seconds = line.split()
            lines[name] = (rc, seconds)
    checks = []
    for name, (rc, seconds) in lines.items():
        path = results / f"{name}.json"
        if path.is_file() and rc != "running":
            result = json.loads(path.read_text())
            result["seconds"] = float(seconds)
            result.setdefault("skipped", [])
            if rc not in ("0", "1") and result["status"] != "FAIL":
                result["status"] = "TIMEOUT" if rc in ("124", "137") else "FAIL"
        else:
            result = _missing(name, rc, seconds)
        result["exit"] = rc
        checks.append(result)
    deps = next((c for c in checks if c["name"] == "deps"), None)
    figures = deps["figures"] if deps else {}
    skips = [f"{c['name']}/{s['name']}: {s['reason']}" for c in checks for s in c["skipped"]]
    skips += [f"{c['name']}: {c['error']}" for c in checks if c["status"] == "SKIP" and c["error"]]
    return {"device": DEVICE, "smoke": SMOKE, "versions": figures.get("versions", {}),
            "gpu": figures.get("gpu"),
            "total_seconds": round(sum(c["seconds"] for c in checks), 1),
            "budget_seconds": budget,
            # a check that skipped only what this machine lacks passes; one never started does not
            "passed": bool(checks) and all(c["status"] == "PASS"
                                           or (c["status"] == "SKIP" and not c["error"])
                                           for c in checks),
            "complete": all(rc not in ("running",) for rc, _ in lines.values()),
            "skips": skips, "checks": checks}


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
        for s in check["skipped"]:
            if set(s) != {"name", "reason"} or not s["reason"]:
                raise ValueError(f"summary.json: check {check['name']!r}: bad skip {s}")


def write(summary: dict, out: Path) -> None:
    """Replace `out` atomically (two checks may finish at once)."""
    tmp = out.with_name(f".{out.name}.{os.getpid()}")
    tmp.write_text(json.dumps(summary, indent=1, default=str))
    os.replace(tmp, out)


def table(summary: dict) -> str:
    lines = [f"{c['name']:<16} {c['status']:<8} {c['seconds']:>6.1f} s  "
             f"{sum(a['ok'] for a in c['asserts'])}/{len(c['asserts'])} asserts"
             + (f", {len(c['skipped'])} skipped" if c["skipped"] else "")
             for c in summary["checks"]]
    lines += [f"SKIP {s}" for s in summary["skips"]]
    lines.append("ALL PASS" if summary["passed"] else "SOME CHECKS FAILED")
    return "\n".join(lines)


if __name__ == "__main__":
    status_file, results, out = map(Path, sys.argv[1:4])
    budget = float(sys.argv[4]) if len(sys.argv) > 4 else None
    summary = merge(status_file, results, budget)
    validate(summary)
    write(summary, out)
    if "--quiet" not in sys.argv:
        print(table(summary))
