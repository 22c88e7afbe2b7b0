"""The momentum model under the vllm engine: one vLLM engine shared (weights swapped in) vs a
second vLLM engine, in one process, on a training step's rollout pattern.

    .venv-vllm/bin/python benchmarks/vllm_momentum.py                    # the lab model
    .venv-vllm/bin/python benchmarks/vllm_momentum.py --shape smollm2-135m

Per step, as `train_step` does with model.engine=vllm: M policy rollouts and N momentum
rollouts of B prompts, then an optimizer step (here: every policy weight nudged, its version
bumped) and the policy pushed, then an EMA step (every momentum weight nudged, bumped) and the
momentum pushed. `shared`: both engines on one vLLM engine (setup.py's choice; a sync there
is pushed right before the engine's next generation); `separate`: each its own. Reported per arrangement: step seconds (median over --steps, interleaved A B A B),
weight pushes per step, start-up seconds and the resident memory the engines added (RSS,
psutil). Last line: one JSON object.
"""

from __future__ import annotations

import argparse
import copy
import dataclasses
import json
import os
import platform
import statistics
import sys
import time

import psutil
import torch

from mgrpo.rollout import SamplingParams, make_engine

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from rollout import EOS_ID, LAB_TEMPERATURE, PAD_ID, build_model, lab_model_and_prompts  # noqa: E402


def _nudge(model: torch.nn.Module, seed: int) -> None:
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(torch.randn(p.shape, generator=g) * 1e-4)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--shape", default="lab", choices=["lab", "smollm2-135m"])
    ap.add_argument("--prompts", type=int, default=8, help="B")
    ap.add_argument("--policy", type=int, default=12, help="M policy rollouts per prompt")
    ap.add_argument("--momentum", type=int, default=4, help="N momentum rollouts per prompt")
    ap.add_argument("--new-tokens", type=int, default=48)
    ap.add_argument("--steps", type=int, default=5)
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    if args.shape == "lab":
        policy, prompts = lab_model_and_prompts(args.prompts, seed=0)
        params = SamplingParams(max_new_tokens=args.new_tokens, temperature=LAB_TEMPERATURE,
                                stop_token_ids=(EOS_ID,))
    else:
        policy = build_model(args.shape, torch.device("cpu"), torch.float32, seed=0)
        g = torch.Generator().manual_seed(0)
        prompts = torch.randint(3, policy.config.vocab_size, (args.prompts, 32), generator=g).tolist()
        params = SamplingParams(max_new_tokens=args.new_tokens, temperature=1.0)
    momentum = copy.deepcopy(policy)
    proc = psutil.Process()
    # vLLM's one-time start-up (imports, kernels) paid before either arrangement is timed
    make_engine("vllm", copy.deepcopy(policy), pad_token_id=PAD_ID).close()
    arrangements = {}
    for name in ("shared", "separate"):
        rss, start = proc.memory_info().rss, time.perf_counter()
        p = make_engine("vllm", policy, pad_token_id=PAD_ID)
        m = make_engine("vllm", momentum, pad_token_id=PAD_ID,
                        share_with=p if name == "shared" else None)
        arrangements[name] = {"engines": (p, m), "startup_s": time.perf_counter() - start,
                              "rss_added_gb": (proc.memory_info().rss - rss) / 2**30,
                              "times": [], "pushes": []}
    runtimes = lambda a: {id(e.runtime): e.runtime for e in a["engines"]}.values()  # noqa: E731
    print(f"vllm momentum arrangements: {args.shape}, B={args.prompts}, M={args.policy}, "
          f"N={args.momentum}, {args.new_tokens} new tokens, {args.steps} steps")
    for step in range(args.steps):
        for a in arrangements.values():  # interleaved: A B A B
            p, m = a["engines"]
            pushes = sum(r.pushes for r in runtimes(a))
            start = time.perf_counter()
            p.generate(prompts, args.policy, dataclasses.replace(params, seed=2 * step))
            m.generate(prompts, args.momentum, dataclasses.replace(params, seed=2 * step + 1))
            _nudge(policy, step)
            p.version.bump()
            p.sync_weights()
            _nudge(momentum, 1000 + step)
            m.version.bump()
            m.sync_weights()
            a["times"].append(time.perf_counter() - start)
            a["pushes"].append(sum(r.pushes for r in runtimes(a)) - pushes)
    result = {"device": platform.processor() or platform.machine(), "shape": args.shape,
              "prompts": args.prompts, "policy_rollouts": args.policy,
              "momentum_rollouts": args.momentum, "new_tokens": args.new_tokens,
              "steps": args.steps, "threads": args.threads, "torch": torch.__version__}
    print(f"  {'arrangement':<10} {'step s':>8} {'pushes/step':>12} {'start-up s':>11} {'RSS GiB':>8}")
    for name, a in arrangements.items():
        seconds = statistics.median(a["times"])
        pushes = statistics.median(a["pushes"])
        print(f"  {name:<10} {seconds:8.2f} {pushes:12.1f} {a['startup_s']:11.1f} "
              f"{a['rss_added_gb']:8.2f}")
        result[f"{name}_step_s"] = seconds
        result[f"{name}_pushes_per_step"] = pushes
        result[f"{name}_startup_s"] = a["startup_s"]
        result[f"{name}_rss_added_gb"] = a["rss_added_gb"]
    result["separate_vs_shared_step"] = result["separate_step_s"] / result["shared_step_s"]
    for a in arrangements.values():
        for engine in a["engines"]:
            engine.close()
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
