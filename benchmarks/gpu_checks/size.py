"""Check 1: what travels to the device, against its limit. No ML library; well under 1 s.

A device call copies the working tree (the tracked files and the untracked files git does
not ignore) plus the paths it carries, and refuses more than 64 MiB. This check adds them up
(in a git checkout: `git ls-files`; elsewhere, on the device, the tree as it arrived) with
the carried paths (CARRY, space-separated, default `.gpu-carry`), and asserts:
- the tree + the carry <= TRAVEL_LIMIT_MIB (40 MiB: room for what later rounds add);
- what the checks themselves need (NEEDED: the package, the benchmarks, pyproject.toml, and
  the carry) <= TRAVEL_LIMIT_MIB as well, so the device check never needs the rest;
and reports the largest top-level folders, so an overflow names what to move out.

    python -m gpu_checks.size            # also as a pre-flight here, before any device call
"""

from __future__ import annotations

import os
import subprocess
from collections import Counter
from pathlib import Path

from gpu_checks.common import Check, main

REPO = Path(__file__).resolve().parents[2]
MIB = 1 << 20
TRAVEL_LIMIT_MIB = 40.0
DEVICE_LIMIT_MIB = 64.0
NEEDED = ("src", "benchmarks", "pyproject.toml")
SKIP_DIRS = {".git", ".venv", "__pycache__", ".pytest_cache", ".hypothesis", ".ruff_cache"}


def _git_files() -> list[Path] | None:
    """The files a device call copies from this checkout, or None outside a git checkout."""
    try:
        out = subprocess.run(["git", "ls-files", "-z", "--cached", "--others",
                              "--exclude-standard"], cwd=REPO, capture_output=True, check=True)
    except (OSError, subprocess.CalledProcessError):
        return None
    return [REPO / name for name in out.stdout.decode().split("\0") if name]


def _walk(root: Path, exclude: set[Path]) -> list[Path]:
    files = []
    for dirpath, dirnames, filenames in os.walk(root):
        here = Path(dirpath)
        dirnames[:] = [d for d in dirnames
                       if d not in SKIP_DIRS and (here / d).resolve() not in exclude]
        files += [here / f for f in filenames]
    return files


def _size(path: Path) -> int:
    try:
        return path.lstat().st_size
    except OSError:
        return 0


def body(check: Check) -> None:
    carry = [REPO / p for p in os.environ.get("CARRY", ".gpu-carry").split() if p]
    scratch_dirs = {Path(os.environ[k]).resolve() for k in ("SCRATCH", "OUT")
                    if os.environ.get(k)}
    tracked = _git_files()
    source = "git ls-files" if tracked is not None else "the tree as it arrived"
    if tracked is None:
        tracked = _walk(REPO, scratch_dirs | {p.resolve() for p in carry})
    carried = [f for p in carry if p.exists()
               for f in (_walk(p, set()) if p.is_dir() else [p])]
    by_top: Counter[str] = Counter()
    for f in tracked:
        by_top[f.relative_to(REPO).parts[0]] += _size(f)
    tree = sum(by_top.values())
    carry_bytes = sum(_size(f) for f in carried)
    needed = sum(by_top[n] for n in NEEDED) + carry_bytes
    largest = {}
    for f in tracked:
        parts = f.relative_to(REPO).parts
        key = "/".join(parts[:3]) if len(parts) > 3 else "/".join(parts[:-1]) or parts[0]
        largest[key] = largest.get(key, 0) + _size(f)
    top = sorted(largest.items(), key=lambda kv: -kv[1])[:6]
    check.record(source=source, tree_mib=tree / MIB, carried_mib=carry_bytes / MIB,
                 carried=[str(p.relative_to(REPO)) for p in carry if p.exists()],
                 needed_mib=needed / MIB,
                 by_top_level_mib={k: round(v / MIB, 2) for k, v in by_top.most_common(8)},
                 largest_folders_mib={k: round(v / MIB, 2) for k, v in top})
    total = (tree + carry_bytes) / MIB
    check.expect("what_the_checks_need_within_limit", needed / MIB <= TRAVEL_LIMIT_MIB,
                 needed / MIB, f"<= {TRAVEL_LIMIT_MIB} MiB")
    check.expect("travelling_tree_within_device_limit", total <= DEVICE_LIMIT_MIB, total,
                 f"<= {DEVICE_LIMIT_MIB} MiB (the device refuses more)")
    check.expect("travelling_tree_within_limit", total <= TRAVEL_LIMIT_MIB, total,
                 f"<= {TRAVEL_LIMIT_MIB} MiB")


if __name__ == "__main__":
    main("size", body)
