"""Peak RSS of training-time log-probs: mgrpo's chunked path vs naive `log_softmax(logits.float())`.

One forward + backward over R x T response tokens (default 8 x 512) with a random Qwen2-style
model of the REAL Qwen vocabulary size (151,936) and a small hidden size, on CPU:

  naive    logits = model(ids).logits (R, T, V); log_softmax(logits.float() / T_s) gathered at
           the targets; loss = -(logp * mask).sum() / mask.sum(); backward.
  chunked  `mgrpo.rollout.score_responses(..., with_grad=True)`: the trunk runs once, then
           `ChunkedTokenLogProb` computes the LM head + log-softmax per chunk of tokens and
           recomputes each chunk's logits in backward, so no (tokens x vocab) fp32 tensor ever
           exists whole; same loss, backward.

Each path runs in its OWN fresh subprocess (peak RSS = `ru_maxrss` of that child, so one
path's freed memory cannot hide in the other's number), in the same invocation. The child
also reports the RSS right after building the model (the baseline both share) and the
gradient norm of the LM head, so the two paths can be checked to compute the same thing.
Target: naive peak / chunked peak >= 4, on the above-baseline part too.

    python benchmarks/memory_logprob.py                 # 8 x 512 tokens, hidden 64
    python benchmarks/memory_logprob.py --rows 4 --tokens 256

Last line: one JSON object.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import subprocess
import sys

QWEN_VOCAB = 151_936
PROMPT_TOKENS = 16
TEMPERATURE = 1.0
TARGET_RATIO = 4.0


def _rss_mb() -> float:
    """Current resident set size (MB) of this process, from /proc (Linux) or ru_maxrss."""
    try:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20
    except (OSError, ValueError):
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def child(path: str, rows: int, tokens: int, hidden: int, layers: int, chunk: int) -> dict:
    """Run one forward+backward with `path` in THIS process; return its memory figures."""
    import torch
    from transformers import Qwen2Config, Qwen2ForCausalLM

    from mgrpo.rollout import score_responses

    torch.set_num_threads(1)
    torch.manual_seed(0)
    config = Qwen2Config(
        vocab_size=QWEN_VOCAB, hidden_size=hidden, intermediate_size=2 * hidden,
        num_hidden_layers=layers, num_attention_heads=4, num_key_value_heads=2,
        max_position_embeddings=PROMPT_TOKENS + tokens, tie_word_embeddings=False,
    )
    model = Qwen2ForCausalLM(config).float()
    gen = torch.Generator().manual_seed(0)
    prompts = torch.randint(4, QWEN_VOCAB, (rows, PROMPT_TOKENS), generator=gen)
    response = torch.randint(4, QWEN_VOCAB, (rows, tokens), generator=gen)  # (R, T)
    mask = torch.ones(rows, tokens, dtype=torch.bool)
    mask[1::2, tokens * 3 // 4 :] = False  # some right padding, as in real batches
    base_rss = _rss_mb()
    if path == "naive":
        ids = torch.cat([prompts, response], dim=1)  # (R, P+T)
        logits = model(input_ids=ids).logits[:, PROMPT_TOKENS - 1 : -1]  # (R, T, V)
        logp = torch.log_softmax(logits.float() / TEMPERATURE, dim=-1)
        logp = logp.gather(-1, response[..., None])[..., 0]  # (R, T)
    else:
        logp, _ = score_responses(
            model, prompts.tolist(), response, mask, TEMPERATURE, with_grad=True,
            chunk_tokens=chunk,
        )
    loss = -(logp * mask).sum() / mask.sum()
    loss.backward()
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KB -> MB on Linux
    head = model.get_output_embeddings().weight
    return {"path": path, "peak_rss_mb": round(peak, 1), "base_rss_mb": round(base_rss, 1),
            "loss": float(loss), "lm_head_grad_norm": float(head.grad.norm())}


def run_child(path: str, args: argparse.Namespace) -> dict:
    cmd = [sys.executable, __file__, "--child", path, "--rows", str(args.rows), "--tokens",
           str(args.tokens), "--hidden", str(args.hidden), "--layers", str(args.layers),
           "--chunk", str(args.chunk)]
    proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        raise RuntimeError(f"{path} child failed ({proc.returncode}):\n{proc.stderr[-3000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=8)
    parser.add_argument("--tokens", type=int, default=512)
    parser.add_argument("--hidden", type=int, default=64)
    parser.add_argument("--layers", type=int, default=2)
    parser.add_argument("--chunk", type=int, default=1024, help="chunk_tokens of the chunked path")
    parser.add_argument("--child", choices=["naive", "chunked"], help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        print(json.dumps(child(args.child, args.rows, args.tokens, args.hidden, args.layers,
                               args.chunk)))
        return 0
    import torch

    res = {p: run_child(p, args) for p in ("naive", "chunked")}
    naive, chunked = res["naive"], res["chunked"]
    ratio = naive["peak_rss_mb"] / chunked["peak_rss_mb"]
    above = (naive["peak_rss_mb"] - naive["base_rss_mb"]) / max(
        chunked["peak_rss_mb"] - chunked["base_rss_mb"], 1e-9)
    logits_mb = args.rows * args.tokens * QWEN_VOCAB * 4 / 2**20
    print(f"forward+backward, {args.rows} x {args.tokens} response tokens, vocab {QWEN_VOCAB}, "
          f"hidden {args.hidden}, {args.layers} layers (one fp32 (R,T,V) logits = {logits_mb:.0f} MB)")
    print(f"{'path':<8} {'peak RSS MB':>12} {'model-built RSS MB':>19} {'loss':>10} {'|dW_head|':>12}")
    for r in (naive, chunked):
        print(f"{r['path']:<8} {r['peak_rss_mb']:>12.1f} {r['base_rss_mb']:>19.1f} "
              f"{r['loss']:>10.5f} {r['lm_head_grad_norm']:>12.6f}")
    print(f"naive / chunked peak RSS: {ratio:.2f}x (above the model-built baseline: {above:.2f}x); "
          f"target >= {TARGET_RATIO}x")
    result = {
        "benchmark": "memory_logprob", "rows": args.rows, "tokens": args.tokens,
        "vocab": QWEN_VOCAB, "hidden": args.hidden, "layers": args.layers, "chunk": args.chunk,
        "torch": torch.__version__, "machine": platform.machine(), "naive": naive,
        "chunked": chunked, "peak_ratio": round(ratio, 2), "above_baseline_ratio": round(above, 2),
        "meets_target": ratio >= TARGET_RATIO,
    }
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
