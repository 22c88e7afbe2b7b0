"""Write `reference.json`, the CPU reference curves the learning checks take their margins
from: per run, the per-step reward/mean and the validation accuracy (points), plus the lab
model's sha256 and how the runs were made. The raw run directories stay out of the tree;
this file is what the device needs (a few KB).

    python benchmarks/gpu_checks/reference.py RUN_DIR... --lab-sha SHA --made TEXT
        [--out benchmarks/gpu_checks/reference.json]

Each RUN_DIR is named `<arm>-s<seed>` (arms: control, m-grpo, grpo) and holds a full
`mgrpo train lab-collapse` run (config.yaml, metrics.jsonl); a run whose config is not the
arm's (preset, optim.lr, recipe shape) is refused.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import yaml

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from gpu_checks.learning import curves, rows  # noqa: E402

EXPECT = {"control": ("m-grpo", 0.0), "m-grpo": ("m-grpo", None), "grpo": ("grpo", None)}


def run_entry(path: Path) -> tuple[str, dict]:
    name = path.name
    arm = name.rsplit("-s", 1)[0]
    if arm not in EXPECT:
        raise SystemExit(f"{path}: name it <arm>-s<seed>, arm one of {sorted(EXPECT)}")
    cfg = yaml.safe_load((path / "config.yaml").read_text())
    preset, lr = EXPECT[arm]
    if cfg["algorithm"]["preset"] != preset or (lr is not None and cfg["optim"]["lr"] != lr):
        raise SystemExit(f"{path}: config is not arm {arm!r} (preset "
                         f"{cfg['algorithm']['preset']}, optim.lr {cfg['optim']['lr']})")
    metrics = rows(path / "metrics.jsonl")
    steps = max(r["step"] for r in metrics)
    if steps != cfg["trainer"]["max_steps"]:
        raise SystemExit(f"{path}: {steps} of {cfg['trainer']['max_steps']} steps (unfinished)")
    return name, {**curves(metrics), "seed": cfg["seed"], "steps": steps,
                  "lr": cfg["optim"]["lr"], "preset": preset}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("runs", nargs="+", type=Path)
    parser.add_argument("--lab-sha", required=True, help="sha256 of the lab model.safetensors")
    parser.add_argument("--made", required=True, help="command, machine and date of the runs")
    parser.add_argument("--out", type=Path, default=Path(__file__).with_name("reference.json"))
    args = parser.parse_args(argv)
    runs = dict(run_entry(p) for p in sorted(args.runs))
    steps = {r["steps"] for r in runs.values()}
    if len(steps) != 1:
        raise SystemExit(f"the runs differ in length: {sorted(steps)}")
    doc = {"recipe": "lab-collapse", "steps": steps.pop(), "lab_model_sha256": args.lab_sha,
           "made": args.made, "runs": runs}
    args.out.write_text(json.dumps(doc, indent=1) + "\n")
    print(f"{args.out}: {len(runs)} runs ({', '.join(runs)})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
