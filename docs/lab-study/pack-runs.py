"""Store finished study runs the way the repository keeps them, and check the stored ones.

    python docs/lab-study/pack-runs.py results/lab-study/mechanism     # pack, update manifest
    python docs/lab-study/pack-runs.py --check                          # verify every stored file

A run directory (one holding ``config.yaml`` and ``metrics.jsonl``) is stored as
``config.yaml`` plus ``metrics.jsonl.xz`` (xz, preset 9 extreme: the same bytes, about 8x
smaller; ``mgrpo report``, ``mgrpo compare --report-only`` and the study scripts read it
as they read ``metrics.jsonl``). Everything else a run leaves (``checkpoints/``,
``tensorboard/``, ``samples.jsonl``, the sweep's ``logs/``) is removed. Only complete runs are
packed (``metrics.jsonl`` reaches the run's ``trainer.max_steps``); others are listed and
left alone, so a half-done sweep can resume, unless ``--incomplete`` says they are finished
as they are (probes stopped on purpose).

The manifest ``docs/lab-study/runs.sha256`` lists the SHA-256 of every stored file under
``results/lab-study`` (``sha256sum -c docs/lab-study/runs.sha256`` from the repository root
checks it too); packing rewrites it, sorted by path.
"""

from __future__ import annotations

import argparse
import hashlib
import lzma
import shutil
import sys
from pathlib import Path

from mgrpo.report.runs import METRICS_FILE
from mgrpo.report.sweep import run_state

REPO = Path(__file__).resolve().parents[2]
RESULTS = REPO / "results" / "lab-study"
MANIFEST = REPO / "docs" / "lab-study" / "runs.sha256"
PACKED = METRICS_FILE + ".xz"
KEEP = {"config.yaml", PACKED}
PRESET = 9 | lzma.PRESET_EXTREME


def stored_files() -> list[Path]:
    """Every file kept under ``results/lab-study``, sorted."""
    return sorted(p for p in RESULTS.rglob("*") if p.is_file())


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def write_manifest() -> int:
    lines = [f"{sha256(p)}  {p.relative_to(REPO)}" for p in stored_files()]
    MANIFEST.write_text("\n".join(lines) + "\n")
    return len(lines)


def check_manifest() -> list[str]:
    """Problems: files listed but missing or changed, files stored but not listed."""
    listed = {}
    for line in MANIFEST.read_text().splitlines():
        digest, _, name = line.partition("  ")
        listed[name] = digest
    problems = [f"{name}: missing" for name in listed if not (REPO / name).is_file()]
    problems += [f"{name}: sha256 differs" for name, digest in listed.items()
                 if (REPO / name).is_file() and sha256(REPO / name) != digest]
    problems += [f"{p.relative_to(REPO)}: not in {MANIFEST.relative_to(REPO)}"
                 for p in stored_files() if str(p.relative_to(REPO)) not in listed]
    return problems


def pack_run(run: Path) -> None:
    """Compress the run's metrics and drop everything but its config."""
    plain = run / METRICS_FILE
    (run / PACKED).write_bytes(lzma.compress(plain.read_bytes(), preset=PRESET))
    plain.unlink()
    for child in run.iterdir():
        if child.name not in KEEP:
            shutil.rmtree(child) if child.is_dir() else child.unlink()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("dirs", nargs="*", type=Path, help="directories holding run directories")
    parser.add_argument("--check", action="store_true", help="verify the manifest and exit")
    parser.add_argument("--incomplete", action="store_true",
                        help="also pack runs that stopped before trainer.max_steps")
    args = parser.parse_args(argv)
    if args.check:
        problems = check_manifest()
        for problem in problems:
            print(f"pack-runs.py: {problem}", file=sys.stderr)
        print(f"{len(stored_files())} stored files, {len(problems)} problems")
        return 1 if problems else 0
    packed, left = 0, []
    for top in args.dirs:
        for metrics in sorted(top.rglob(METRICS_FILE)):
            run = metrics.parent
            if run_state(run) != "complete" and not args.incomplete:
                left.append(str(run))
                continue
            pack_run(run)
            packed += 1
        for logs in top.glob("logs"):
            if not left:
                shutil.rmtree(logs)
    print(f"packed {packed} runs; manifest: {write_manifest()} files")
    if left:
        print("not complete, left as they are: " + ", ".join(left))
    return 0


if __name__ == "__main__":
    sys.exit(main())
