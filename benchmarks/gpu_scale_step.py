"""One M-GRPO training step of a Qwen3-0.6B-shaped random model on ONE GPU, three ways.

    PYTHONPATH=src python benchmarks/gpu_scale_step.py [--steps 2] [--max-new-tokens 256]

Configurations (same data, seed, G, lengths; bf16 compute; kl_coef > 0 so a reference exists):
- `plain`: the one-process trainer (fp32 master under bf16 autocast, bf16 generator copies of
           policy and momentum, fp32 momentum master, bf16 reference copy);
- `lora`:  model.lora.r=16 on all attention + MLP projections (reference = adapters off,
           momentum = fp32 EMA of the adapters only);
- `fsdp1`: FSDP2 with world size 1 (fp32 sharded master, bf16 compute / fp32 reduce, sharded
           reference, unsharded bf16 generator copies) - the code path of multi-GPU runs.
For each: the per-stage times of the LAST step (the first includes CUDA-graph capture and
allocator warm-up) and `torch.cuda.max_memory_allocated` over the whole configuration.
No download: the model is the embedded `qwen3-0.6b-random` (`mgrpo.models.random_qwen3`:
Qwen3-0.6B shapes, random weights, character tokenizer; `--cpu-smoke` uses its CPU-sized
twin `qwen3-random-smoke`); prompts are the synthetic arithmetic task.
Prints one table line per configuration, then one JSON line (the last line).
"""

from __future__ import annotations

import argparse
import gc
import json
import sys
import tempfile
import time
from pathlib import Path

import torch

STAGES = ("generate", "vote", "reward", "logprobs", "train", "sync", "ema", "step")
CONFIGS = {
    "plain": [],
    "lora": ["model.lora.r=16", "model.lora.alpha=32"],
    "fsdp1": ["distributed.fsdp=true"],
}


def run_config(name: str, overrides: list[str], args: argparse.Namespace, root: Path) -> dict:
    from mgrpo.config import resolve_config
    from mgrpo.train.run.trainer import build_run
    from mgrpo.train.step import StepBatch, train_step

    base = [
        f"model.name={'qwen3-random-smoke' if args.cpu_smoke else 'qwen3-0.6b-random'}",
        "model.engine=fast", "validation.data=null", f"seed={args.seed}",
        f"trainer.max_steps={args.steps}", f"trainer.prompts_per_step={args.prompts}",
        f"trainer.micro_batch_size={args.micro}", f"algorithm.rollouts={args.rollouts}",
        f"generation.max_new_tokens={args.max_new_tokens}", "generation.temperature=1.0",
        "trainer.progress=false", "optim.lr=1e-6", "algorithm.kl_coef=0.005",
    ]
    cfg = resolve_config("tiny", base + overrides)
    cuda = torch.cuda.is_available() and not args.cpu_smoke
    if cuda:
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats()
    else:
        base.append("model.device=cpu")
        cfg = resolve_config("tiny", base + overrides)
    t0 = time.perf_counter()
    run = build_run(cfg, root / name)
    build_s = time.perf_counter() - t0
    policy = run.models.policy
    trainable = sum(p.numel() for p in policy.parameters() if p.requires_grad)
    metrics = {}
    for step in range(1, args.steps + 1):
        records, ids = run.train_set.batch(step, cfg.trainer.prompts_per_step)
        batch = StepBatch(ids, [r.answer for r in records], prompt_offset=0, global_prompts=len(ids))
        if cuda:
            torch.cuda.synchronize()
        metrics = train_step(run.models, batch, cfg, run.spec, step)
        if cuda:
            torch.cuda.synchronize()
    out = {
        "config": name,
        "build_s": round(build_s, 2),
        "trainable_params": trainable,
        "peak_mem_gib": round(torch.cuda.max_memory_allocated() / 2**30, 3) if cuda else None,
        "tokens_generated": int(metrics["response/length_mean"] * args.prompts * args.rollouts),
        **{f"time_{s}_s": round(metrics.get(f"time/{s}", 0.0), 3) for s in STAGES},
        "grad_norm": metrics["grad_norm"],
    }
    run.models.checker.close()
    del run, policy
    gc.collect()
    if cuda:
        torch.cuda.empty_cache()
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=2, help="steps per config; the last is reported")
    parser.add_argument("--prompts", type=int, default=4)
    parser.add_argument("--rollouts", type=int, default=8, help="G (M = 6 policy + N = 2 momentum)")
    parser.add_argument("--micro", type=int, default=8, help="trainer.micro_batch_size")
    parser.add_argument("--max-new-tokens", type=int, default=256)
    parser.add_argument("--configs", default=",".join(CONFIGS), help="comma list of " + ", ".join(CONFIGS))
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--cpu-smoke", action="store_true",
                        help="tiny Qwen3 shape on CPU: checks the script, numbers meaningless")
    args = parser.parse_args(argv)
    if not torch.cuda.is_available() and not args.cpu_smoke:
        print("gpu_scale_step: needs a CUDA GPU", file=sys.stderr)
        return 2
    names = [c.strip() for c in args.configs.split(",") if c.strip()]
    unknown = [c for c in names if c not in CONFIGS]
    if unknown:
        parser.error(f"unknown configs {unknown}; valid: {', '.join(CONFIGS)}")
    results = []
    with tempfile.TemporaryDirectory(prefix="mgrpo-gpu-scale-") as tmp:
        for name in names:
            res = run_config(name, CONFIGS[name], args, Path(tmp))
            results.append(res)
            stages = " ".join(f"{s}={res[f'time_{s}_s']:.2f}s" for s in STAGES)
            print(f"{name:6s} peak={res['peak_mem_gib']}GiB trainable={res['trainable_params']:,} "
                  f"{stages}", flush=True)
    summary = {
        "benchmark": "gpu_scale_step",
        "device": "cpu (smoke)" if args.cpu_smoke else torch.cuda.get_device_name(),
        "torch": torch.__version__,
        "shape": "smoke" if args.cpu_smoke else "qwen3-0.6b",
        "prompts": args.prompts, "rollouts": args.rollouts, "max_new_tokens": args.max_new_tokens,
        "results": results,
    }
    import torch.distributed as dist

    if dist.is_initialized():  # the fsdp1 configuration's one-rank process group
        dist.destroy_process_group()
    print(json.dumps(summary))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
