"""Memory model: static + transient peak per stage, per GPU, for Qwen3-0.6B / 4B / 8B.

    python benchmarks/memory_model.py [--world 8] [--recipe paper] [--no-keep-workspace]
           [--json-only] [--write docs/memory.md]

Computed from the models' configs (hard-coded below: Qwen3 hidden / layers / heads / KV heads /
head_dim / intermediate / vocab / tied embeddings; no hub access) and the run shapes of a recipe
(default `paper`: 8 prompts x 32 rollouts (24 policy + 8 momentum), 512 + 3072 tokens,
micro-batch 8, gradient checkpointing, kl_coef > 0, FSDP2 over `--world` GPUs). Prints JSON
(every stage's terms in bytes) and a table (GiB); `--write` replaces the generated block of
docs/memory.md with the table. The formulas are in `stage_peaks`; docs/memory.md explains them.
Not modelled: the CUDA context (~0.5-1 GiB), allocator fragmentation, NCCL buffers.
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import asdict, dataclass
from pathlib import Path

import torch

from mgrpo.config import config_from_dict, load_recipe
from mgrpo.rollout.memory import KVShape
from mgrpo.rollout.scoring import MAX_CHUNK_LOGITS_BYTES
from mgrpo.train.layout.memory_budget import kv_workspace_bytes, lm_head_grad_bytes, static_bytes

GIB = 1 << 30
EVAL_PROMPTS = 64  # `mgrpo eval` prompts per engine call (evaluation.runner.DEFAULT_BATCH_SIZE)
EVAL_PAPER_K = 8  # --protocol paper: avg@8 on AIME24/25 and GPQA-Diamond
BEGIN, END = "<!-- memory-table:begin -->", "<!-- memory-table:end -->"


@dataclass(frozen=True)
class ModelShape:
    """A Qwen3 config's numbers (from the models' config.json files)."""

    name: str
    hidden: int
    layers: int
    heads: int
    kv_heads: int
    head_dim: int
    intermediate: int
    vocab: int
    tied: bool

    @property
    def layer_params(self) -> int:
        """q, k, v, o, gate, up, down weights + 2 RMSNorms + the q/k head norms (no biases)."""
        h, d = self.hidden, self.head_dim
        attn = h * self.heads * d + 2 * h * self.kv_heads * d + self.heads * d * h
        return attn + 3 * h * self.intermediate + 2 * h + 2 * d

    @property
    def root_params(self) -> int:
        """Embeddings (+ untied LM head) + final norm: the FSDP root unit."""
        return self.vocab * self.hidden * (1 if self.tied else 2) + self.hidden

    @property
    def params(self) -> int:
        return self.layers * self.layer_params + self.root_params

    @property
    def largest_tensor(self) -> int:
        return max(self.vocab * self.hidden, self.hidden * self.intermediate)

    def kv(self, itemsize: int = 2) -> KVShape:
        return KVShape(self.layers, self.kv_heads, self.head_dim, self.hidden,
                       self.intermediate, self.vocab, itemsize)


QWEN3 = {
    "qwen3-0.6b": ModelShape("Qwen3-0.6B", 1024, 28, 16, 8, 128, 3072, 151936, True),
    "qwen3-4b": ModelShape("Qwen3-4B", 2560, 36, 32, 8, 128, 9728, 151936, True),
    "qwen3-8b": ModelShape("Qwen3-8B", 4096, 36, 32, 8, 128, 12288, 151936, False),
}


@dataclass(frozen=True)
class RunShape:
    """What a recipe makes one GPU hold."""

    world: int
    prompts_per_step: int
    rollouts: int  # rows per prompt in the joint decode loop (policy + momentum)
    prompt_len: int
    new_tokens: int
    micro_batch: int
    reference: bool
    momentum: bool
    val_prompts: int  # validation prompts per engine call (one evaluation batch)
    val_samples: int
    val_new_tokens: int
    keep_workspace: bool = True  # generation.keep_workspace: the KV workspace between steps

    @property
    def length(self) -> int:
        return self.prompt_len + self.new_tokens


def run_shape(recipe: str, world: int, keep_workspace: bool | None = None) -> RunShape:
    cfg = config_from_dict(load_recipe(recipe))
    val = cfg.validation
    # validation runs whole evaluation batches of EVAL_PROMPTS prompts per rank
    val_prompts = min(EVAL_PROMPTS, val.limit or EVAL_PROMPTS)
    return RunShape(
        world=world,
        prompts_per_step=cfg.trainer.prompts_per_step,
        rollouts=cfg.algorithm.rollouts,
        prompt_len=cfg.data.max_prompt_length,
        new_tokens=cfg.generation.max_new_tokens,
        micro_batch=cfg.trainer.micro_batch_size,
        reference=cfg.algorithm.kl_coef > 0,
        momentum=True,
        val_prompts=val_prompts,
        val_samples=val.samples,
        val_new_tokens=val.max_new_tokens or cfg.generation.max_new_tokens,
        keep_workspace=(cfg.generation.keep_workspace if keep_workspace is None
                        else keep_workspace),
    )


def stage_peaks(m: ModelShape, r: RunShape) -> dict[str, dict[str, int]]:
    """Bytes per GPU at each stage's peak: {stage: {term: bytes}}, terms summing to the peak.

    P params, W GPUs; fp32 master, bf16 compute and generators:
    - persistent: master 4P/W + AdamW 8P/W + momentum master 4P/W + reference 2P/W (bf16)
      + two unsharded bf16 generators 4P (`mgrpo.train.layout.memory_budget.static_bytes`, which
      the trainer's pre-flight uses). Gradients (4P/W) live from backward to the step.
    - startup: generators + shards built so far + one full fp32 FSDP unit in flight (the
      largest of a decoder layer and the root), before any AdamW state exists.
    - rollout: KV cache 2 L kvh D 2 bytes per token x rows x (prompt + new), sampler (6
      fp32 (rows, V) tensors, the CUDA-graph logits buffer among them), prefill of the
      prompts through both models (`rollout.memory.KVShape`).
    - kept KV workspace (`generation.keep_workspace`, default on): the rollout's K/V (length
      rounded up to 256) and the graphs' fp32 logits buffer stay allocated from the rollout
      to the next step, so every later stage holds them (`memory_budget.kv_workspace_bytes`).
    - scoring (logp_old / logp_ref, no grad): one micro-batch of T = micro x length tokens:
      two all-gathered bf16 layers (current + prefetch), the root unit gathered (the frozen
      reference reshards its root after the forward, so it does not persist), the layer's
      activations T (2H + (nh + 2 kvh) D + nh D + 3 I) x 2 bytes, final hidden states, and
      two LM-head chunks of fp32 logits (`rollout.scoring`).
    - train (forward + backward, gradient checkpointing): grads 4P/W + the saved layer
      inputs L T H x 2 + one layer's recomputed activations and their gradients
      (2 x T (4H + 2 (nh + 2 kvh) D + 5 I) x 2) + gathered layers and root + the unsharded
      fp32 gradient of one layer before its reduce-scatter + 4 LM-head logit chunks + the
      LM-head weight gradient's temporaries: fp32 accumulator, a bf16 chunk product and the
      bf16 result, 8 V H (`memory_budget.lm_head_grad_bytes`).
    - optimizer: grads + AdamW's foreach temporaries (two fp32 lists of the local shards).
    - ema: the fp32 master read in place (no cast) + one gathered bf16 tensor in flight
      while the momentum generator is refreshed (each shard is cast before the all-gather).
    - validation: decodes inside the kept workspace, in loops of at most its rows
      (`rollout.workspace`): the workspace + one loop's sampler and prefill; a validation
      longer than the workspace (or without one kept) decodes its batch in a workspace of
      its own, freed after validation.
    """
    p, w = m.params, r.world
    kv = m.kv(2)
    # the package's formula (the trainer's memory pre-flight uses the same one)
    static = static_bytes("sharded", params=p, trainable=p, world=w, compute=2, master=4,
                          momentum=r.momentum, reference=r.reference)
    grads = {"gradients fp32 4P/W": static.pop("gradients fp32 4P/W")}
    persistent = static
    unit = max(m.layer_params, m.root_params)
    startup = {k: v for k, v in persistent.items() if not k.startswith("AdamW")}
    startup["one full fp32 FSDP unit in flight"] = 4 * unit
    prompts = -(-r.prompts_per_step // w)
    rows = prompts * r.rollouts
    rollout = dict(persistent)
    rollout["KV cache"] = rows * kv.kv_bytes_per_token * r.length
    rollout["sampler + logits buffer"] = rows * (kv.row_bytes(r.length)
                                                 - kv.kv_bytes_per_token * r.length)
    rollout["prefill"] = prompts * 2 * kv.prefill_bytes(r.prompt_len)
    kept = {}
    if r.keep_workspace:
        kept["KV workspace kept from the rollout"] = kv_workspace_bytes(
            rows=rows, length=r.length, layers=m.layers, kv_heads=m.kv_heads,
            head_dim=m.head_dim, vocab=m.vocab, itemsize=2)
    t = r.micro_batch * r.length
    h, i, d = m.hidden, m.intermediate, m.head_dim
    qkv = (m.heads + 2 * m.kv_heads) * d
    gathered = 2 * 2 * m.layer_params + 2 * m.root_params
    scoring = dict(persistent) | kept
    scoring["all-gathered layers + root bf16"] = gathered
    scoring["layer activations"] = t * (2 * h + qkv + m.heads * d + 3 * i) * 2
    scoring["final hidden states"] = t * h * 2
    scoring["LM-head logit chunks"] = 2 * MAX_CHUNK_LOGITS_BYTES
    train = dict(persistent) | kept | grads
    train["checkpointed layer inputs"] = m.layers * t * h * 2
    train["one layer's activations + their grads"] = 2 * t * (4 * h + 2 * qkv + 5 * i) * 2
    train["all-gathered layers + root bf16"] = gathered
    train["unsharded fp32 layer gradient"] = 4 * m.layer_params
    train["LM-head logit chunks + grads"] = 4 * MAX_CHUNK_LOGITS_BYTES
    train["LM-head weight-gradient temporaries"] = lm_head_grad_bytes(
        vocab=m.vocab, hidden=m.hidden, weight=2, product=2)
    optimizer = dict(persistent) | kept | grads
    optimizer["AdamW foreach temporaries"] = 2 * 4 * p // w
    ema = dict(persistent) | kept
    ema["gathered bf16 tensor"] = 2 * m.largest_tensor
    val_len = r.prompt_len + r.val_new_tokens
    validation = dict(persistent) | kept
    inside = bool(kept) and val_len <= r.length and r.val_samples <= rows
    val_prompts = min(r.val_prompts, rows // r.val_samples) if inside else r.val_prompts
    val_rows = val_prompts * r.val_samples  # one decode loop
    if not inside:
        validation["KV cache"] = val_rows * kv.kv_bytes_per_token * val_len
    validation["sampler + logits buffer"] = val_rows * (kv.row_bytes(val_len)
                                                        - kv.kv_bytes_per_token * val_len)
    validation["prefill"] = val_prompts * kv.prefill_bytes(r.prompt_len)
    eval_rows = EVAL_PROMPTS * EVAL_PAPER_K
    evaluation = {
        "model bf16 2P": 2 * p,
        "KV cache": eval_rows * kv.kv_bytes_per_token * r.length,
        "sampler + logits buffer": eval_rows * (kv.row_bytes(r.length)
                                                - kv.kv_bytes_per_token * r.length),
        "prefill": EVAL_PROMPTS * kv.prefill_bytes(r.prompt_len),
    }
    return {
        "static": persistent,
        "startup": startup,
        "rollout": rollout,
        "scoring": scoring,
        "train": train,
        "optimizer": optimizer,
        "ema": ema,
        "validation": validation,
        "eval (1 GPU, 64 x 8 rows, one loop)": evaluation,
    }


def model_report(recipe: str, world: int, keep_workspace: bool | None = None) -> dict:
    shape = run_shape(recipe, world, keep_workspace)
    out = {"recipe": recipe, "run": asdict(shape), "models": {}}
    for key, m in QWEN3.items():
        stages = stage_peaks(m, shape)
        out["models"][key] = {
            "config": asdict(m),
            "params": m.params,
            "kv_bytes_per_token": m.kv(2).kv_bytes_per_token,
            "stages": {s: {"total": sum(t.values()), "terms": t} for s, t in stages.items()},
        }
    return out


def table(report: dict) -> str:
    """Markdown table: GiB per GPU, one row per model, one column per stage."""
    names = list(next(iter(report["models"].values()))["stages"])
    training = [s for s in names if not s.startswith("eval")]
    head = "| model | P | " + " | ".join(names[:-1]) + " | training peak | " + names[-1] + " |"
    rule = "|" + "---|" * (len(names) + 3)
    lines = [head, rule]
    for m in report["models"].values():
        totals = {s: m["stages"][s]["total"] for s in names}
        peak = max(totals[s] for s in training)
        cells = [f"{totals[s] / GIB:.1f}" for s in names[:-1]]
        cells += [f"**{peak / GIB:.1f}**", f"{totals[names[-1]] / GIB:.1f}"]
        lines.append(f"| {m['config']['name']} | {m['params'] / 1e9:.3f} B | " + " | ".join(cells)
                     + " |")
    return "\n".join(lines)


def write_table(path: Path, text: str) -> None:
    """Replace the block between the BEGIN/END markers of `path` with `text`."""
    doc = path.read_text()
    if BEGIN not in doc or END not in doc:
        raise SystemExit(f"{path}: no {BEGIN} ... {END} block to replace")
    head, rest = doc.split(BEGIN, 1)
    _, tail = rest.split(END, 1)
    path.write_text(f"{head}{BEGIN}\n{text}\n{END}{tail}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--world", type=int, default=8, help="GPUs (FSDP2 ranks)")
    parser.add_argument("--recipe", default="paper")
    parser.add_argument("--no-keep-workspace", action="store_true",
                        help="generation.keep_workspace=false: no KV workspace between steps")
    parser.add_argument("--json-only", action="store_true")
    parser.add_argument("--write", type=Path, default=None,
                        help="markdown file whose generated table block to replace")
    args = parser.parse_args(argv)
    if args.world < 1:
        parser.error("--world must be >= 1")
    report = model_report(args.recipe, args.world, False if args.no_keep_workspace else None)
    print(json.dumps(report, indent=1))
    flag = " --no-keep-workspace" if args.no_keep_workspace else ""
    kept = "not kept" if args.no_keep_workspace else "kept between steps"
    text = (f"GiB per GPU, recipe `{args.recipe}`, FSDP2 over W = {args.world} GPUs, KV "
            f"workspace {kept} (`python benchmarks/memory_model.py --world {args.world}{flag}`):"
            f"\n\n" + table(report))
    if not args.json_only:
        print(text, file=sys.stderr)
    if args.write is not None:
        write_table(args.write, text)
    return 0


if __name__ == "__main__":
    torch.set_num_threads(1)
    raise SystemExit(main())
