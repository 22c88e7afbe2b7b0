"""Measured peak GPU memory per training stage next to `memory_model.py`'s prediction.

    python benchmarks/memory_measure.py [--model qwen3-0.6b] [--layers N] [--prompts 1]
                                        [--new-tokens 3072] [--device cuda]

One process, FSDP2 over a one-rank group (W = 1), a Qwen3-shaped model with random weights
built from the hard-coded config (no hub); `--layers` shortens the trunk to fit a time budget.
Stages, in training order, each measured as `torch.cuda.max_memory_allocated` after a peak
reset: startup (`shard_run_models` from a host fp32 model), rollout (`generate_joint`,
`--prompts` prompts x 24 policy + 8 momentum rows, prompt 512 + `--new-tokens`, no stop
token so every row runs to the end), scoring (no-grad `logp_old` pass of one micro-batch),
train (forward + backward of one micro-batch), optimizer (AdamW step), ema (momentum update +
generator refresh), validation (the policy engine inside `keeping_workspace()`, as the
trainer validates: 2 x (24 + 8) x `--prompts` prompts of one sample, twice the rollout's
rows). The rollout engines stay alive from the rollout to the end, as in the trainer, so
their kept KV workspace is in every later stage. Prints one JSON object: per stage measured
/ predicted GiB, the ratio and the seconds, the rollout's decode chunking (prompts per
decode loop under the KV budget, loops) and the kept workspace's rows after the rollout and
after validation (validation must not grow it). `--device cpu` runs the same code without measuring memory (a smoke test of
this script); `--model smoke` is a 2-layer Qwen3 of the same kind for that.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from memory_model import GIB, QWEN3, RunShape, stage_peaks  # noqa: E402

MICRO_BATCH = 8
POLICY_ROWS, MOMENTUM_ROWS = 24, 8
VAL_PER_PROMPT = 2 * (POLICY_ROWS + MOMENTUM_ROWS)  # validation prompts: twice the rollout's rows
SHAPES = {**QWEN3, "smoke": dataclasses.replace(
    QWEN3["qwen3-0.6b"], name="smoke", hidden=64, layers=2, heads=4, kv_heads=2, head_dim=16,
    intermediate=192, vocab=512)}


def build_model(shape, seed: int = 0):
    """A random-weight Qwen3ForCausalLM of `shape` in fp32 on the host."""
    from transformers import Qwen3Config, Qwen3ForCausalLM

    cfg = Qwen3Config(
        vocab_size=shape.vocab, hidden_size=shape.hidden, intermediate_size=shape.intermediate,
        num_hidden_layers=shape.layers, num_attention_heads=shape.heads,
        num_key_value_heads=shape.kv_heads, head_dim=shape.head_dim,
        tie_word_embeddings=shape.tied, max_position_embeddings=32768,
    )
    torch.manual_seed(seed)
    model = Qwen3ForCausalLM(cfg).to(torch.float32)
    model.eval()
    return model


def _workspace_rows(engine) -> int | None:
    """Rows of the engine's kept KV workspace (None: nothing kept, e.g. on CPU)."""
    ws = engine.workspaces.kept
    return None if ws is None else ws.rows


class Meter:
    """Peak allocated bytes per stage on CUDA (None elsewhere) and seconds per stage."""

    def __init__(self, device: torch.device) -> None:
        self.cuda = device.type == "cuda"
        self.peaks: dict[str, int | None] = {}
        self.seconds: dict[str, float] = {}
        self.t0 = 0.0

    def start(self) -> None:
        if self.cuda:
            torch.cuda.synchronize()
            torch.cuda.reset_peak_memory_stats()
        self.t0 = time.perf_counter()

    def stop(self, stage: str) -> None:
        if self.cuda:
            torch.cuda.synchronize()
        self.seconds[stage] = time.perf_counter() - self.t0
        self.peaks[stage] = torch.cuda.max_memory_allocated() if self.cuda else None


def measure(args) -> dict:
    from mgrpo.parallel.distributed import init_distributed, shutdown
    from mgrpo.rollout import SamplingParams, make_engine
    from mgrpo.train.layout.layouts import shard_run_models
    from mgrpo.train.layout.momentum import ShardedMomentum

    device = torch.device(args.device)
    shape = SHAPES[args.model]
    if args.layers:
        shape = dataclasses.replace(shape, layers=args.layers)
    ctx = init_distributed(fsdp=True, device=args.device, timeout_s=600)
    meter = Meter(device)
    gen_dtype = torch.bfloat16 if device.type == "cuda" else torch.float32
    policy = build_model(shape)
    meter.start()
    models = shard_run_models(ctx, policy, gen_dtype=gen_dtype, with_reference=True,
                              with_momentum=True, device=device)
    meter.stop("startup")
    policy = models.policy
    momentum = ShardedMomentum(policy, models.momentum_generator, ctx)
    optimizer = torch.optim.AdamW([p for p in policy.parameters() if p.requires_grad], lr=1e-6)

    g = torch.Generator().manual_seed(0)
    prompts = [torch.randint(10, shape.vocab - 10, (512,), generator=g).tolist()
               for _ in range(args.prompts)]
    params = SamplingParams(max_new_tokens=args.new_tokens, temperature=1.0, seed=0,
                            stop_token_ids=())
    pe = make_engine("fast", models.policy_full, pad_token_id=0)
    me = make_engine("fast", models.momentum_generator, pad_token_id=0)
    per_loop = pe.plan_chunks(prompts, [POLICY_ROWS, MOMENTUM_ROWS], args.new_tokens)
    chunking = {"prompts": len(prompts), "prompts_per_loop": per_loop,
                "loops": -(-len(prompts) // per_loop)}
    meter.start()
    batches = pe.generate_joint(prompts, [(pe, POLICY_ROWS, params), (me, MOMENTUM_ROWS, params)])
    meter.stop("rollout")
    # the engines live on, as in the trainer: their kept workspace is in every later stage
    workspace = {"rows_after_rollout": _workspace_rows(pe)}
    batch = batches[0]
    rows = min(MICRO_BATCH, batch.num_rollouts)
    prompt_ids = [prompts[int(i)] for i in batch.prompt_index[:rows]]
    resp, mask = batch.response_ids[:rows], batch.response_mask[:rows]
    score = policy.mgrpo_score
    meter.start()
    score(prompt_ids, resp, mask, 1.0, with_grad=False)
    meter.stop("scoring")
    meter.start()
    logp, _ = score(prompt_ids, resp, mask, 1.0, with_grad=True)
    (logp.sum() / mask.sum()).backward()
    meter.stop("train")
    meter.start()
    optimizer.step()
    meter.stop("optimizer")
    optimizer.zero_grad(set_to_none=True)
    meter.start()
    momentum.update_(policy, 0.99)
    meter.stop("ema")
    val_prompts = [p[:-1] + [10 + i] for p in prompts for i in range(VAL_PER_PROMPT)]
    meter.start()
    with pe.keeping_workspace():  # as `train.validation.run_validation`
        pe.generate(val_prompts, 1, params)
    meter.stop("validation")
    workspace["rows_after_validation"] = _workspace_rows(pe)
    shutdown(ctx)

    run = RunShape(world=1, prompts_per_step=args.prompts, rollouts=POLICY_ROWS + MOMENTUM_ROWS,
                   prompt_len=512, new_tokens=args.new_tokens, micro_batch=rows, reference=True,
                   momentum=True, val_prompts=len(val_prompts), val_samples=1,
                   val_new_tokens=args.new_tokens, keep_workspace=pe.keep_workspace)
    predicted = {s: sum(t.values()) for s, t in stage_peaks(shape, run).items()}
    out = {"model": shape.name, "layers": shape.layers, "device": str(device),
           "gpu": torch.cuda.get_device_name() if device.type == "cuda" else None,
           "decode_chunking": chunking, "kept_workspace": workspace, "stages": {}}
    for stage, peak in meter.peaks.items():
        pred = predicted[stage]
        out["stages"][stage] = {
            "measured_gib": None if peak is None else round(peak / GIB, 3),
            "predicted_gib": round(pred / GIB, 3),
            "measured_over_predicted": None if peak is None else round(peak / pred, 3),
            "seconds": round(meter.seconds[stage], 3),
        }
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", choices=sorted(SHAPES), default="qwen3-0.6b")
    parser.add_argument("--layers", type=int, default=None, help="decoder layers (default: all)")
    parser.add_argument("--prompts", type=int, default=1)
    parser.add_argument("--new-tokens", type=int, default=3072)
    parser.add_argument("--device", default="cuda")
    args = parser.parse_args(argv)
    if args.device.startswith("cuda") and not torch.cuda.is_available():
        parser.error("--device cuda needs a GPU (use --device cpu for a smoke run)")
    print(json.dumps(measure(args), indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
