"""Behaviour check for refactors: 5 presets x the `tiny` and `demo` recipes, 4 steps each.

A refactor that moves code but must not change what training does records these runs before
the change and after it, and compares every metric except the timers (`time/*`) for exact
equality. The presets are chosen to cover distinct paths through the step: m-grpo (momentum
votes + IQR filter), srt (policy-only vote), ttrl (vote-only policy rollouts), grpo (reward
from the ground truth) and co-rewarding-ii (an EMA teacher's greedy label).

    python benchmarks/behaviour_runs.py record DIR [--src SRC] [--jobs 2]
    python benchmarks/behaviour_runs.py compare BASE_DIR NEW_DIR

`record` runs `python -m mgrpo train RECIPE algorithm.preset=P trainer.max_steps=4
trainer.threads=1 -o DIR/RECIPE-P` for each pair (with `--src`, another checkout's `src/`
goes first on PYTHONPATH, e.g. an exported copy of the commit before the change). One torch
thread: with two, the same code on the same machine gave m-grpo demo runs that differ in the
last digits of grad_norm and loss/kl from step 3 on (the thread pools' reduction order), so
only a one-thread run is bit-reproducible and an exact comparison means anything. The demo recipe builds
the lab world `lab:default` on first use (about 80 s); set MGRPO_CACHE_DIR to keep that
cache apart from others. `compare` prints one line per run and exits 1 on any difference.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

PRESETS = ("m-grpo", "srt", "ttrl", "grpo", "co-rewarding-ii")
RECIPES = ("tiny", "demo")
STEPS = 4


def run_names() -> list[tuple[str, str]]:
    return [(recipe, preset) for recipe in RECIPES for preset in PRESETS]


def record(out: Path, src: Path | None, jobs: int) -> int:
    env = dict(os.environ)
    if src is not None:
        env["PYTHONPATH"] = os.pathsep.join([str(src.resolve())] + env.get("PYTHONPATH", "").split(os.pathsep))
    out.mkdir(parents=True, exist_ok=True)

    def one(pair: tuple[str, str]) -> tuple[str, int]:
        recipe, preset = pair
        run_dir = out / f"{recipe}-{preset}"
        cmd = [sys.executable, "-m", "mgrpo", "train", recipe, f"algorithm.preset={preset}",
               f"trainer.max_steps={STEPS}", "trainer.threads=1", "-o", str(run_dir)]
        with open(out / f"{recipe}-{preset}.log", "w") as log:
            rc = subprocess.run(cmd, env=env, stdout=log, stderr=subprocess.STDOUT).returncode
        return f"{recipe}-{preset}", rc

    # the demo recipe's first run builds the lab world; build it before the others race for it
    pairs = run_names()
    first = [p for p in pairs if p[0] == "demo"][:1]
    results = [one(p) for p in first]
    with ThreadPoolExecutor(max_workers=jobs) as pool:
        results += list(pool.map(one, [p for p in pairs if p not in first]))
    bad = [(name, rc) for name, rc in results if rc != 0]
    for name, rc in results:
        print(f"{name:28s} rc={rc}")
    return 1 if bad else 0


def load_metrics(path: Path) -> list[dict]:
    rows = []
    for line in path.read_text().splitlines():
        if line.strip():
            row = json.loads(line)
            rows.append({k: v for k, v in row.items() if not k.startswith("time/")})
    return rows


def compare(base: Path, new: Path) -> int:
    failures = 0
    for recipe, preset in run_names():
        name = f"{recipe}-{preset}"
        a, b = base / name / "metrics.jsonl", new / name / "metrics.jsonl"
        if not a.exists() or not b.exists():
            print(f"{name:28s} MISSING ({a if not a.exists() else b})")
            failures += 1
            continue
        ra, rb = load_metrics(a), load_metrics(b)
        diffs = []
        if len(ra) != len(rb):
            diffs.append(f"{len(ra)} vs {len(rb)} rows")
        for x, y in zip(ra, rb):
            for key in sorted(set(x) | set(y)):
                if x.get(key, "<absent>") != y.get(key, "<absent>"):
                    diffs.append(f"step {x.get('step')} {key}: {x.get(key, '<absent>')} vs {y.get(key, '<absent>')}")
        values = sum(len(row) for row in ra)
        print(f"{name:28s} {'same' if not diffs else 'DIFFERENT'} ({len(ra)} rows, {values} "
              "values besides time/*)")
        for d in diffs[:10]:
            print(f"    {d}")
        failures += bool(diffs)
    return 1 if failures else 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    rec = sub.add_parser("record", help="run the 20 runs into DIR")
    rec.add_argument("out", type=Path)
    rec.add_argument("--src", type=Path, default=None, help="a checkout's src/ to run instead")
    rec.add_argument("--jobs", type=int, default=2)
    cmp = sub.add_parser("compare", help="compare two recorded directories")
    cmp.add_argument("base", type=Path)
    cmp.add_argument("new", type=Path)
    args = parser.parse_args(argv)
    if args.command == "record":
        return record(args.out, args.src, args.jobs)
    return compare(args.base, args.new)


if __name__ == "__main__":
    sys.exit(main())
