"""Rollout throughput: the `hf`, `fast` and `vllm` engines on the same prompts, one process.

    PYTHONPATH=src python benchmarks/rollout.py                 # CPU, SmolLM2-135M shape
    PYTHONPATH=src python benchmarks/rollout.py --device cuda   # Qwen3-0.6B shape, 256 seqs
    PYTHONPATH=src python benchmarks/rollout.py --quick         # tiny smoke run
    .venv-vllm/bin/python benchmarks/rollout.py --engines fast,hf,vllm --shape lab
                                     # the lab model (real weights, lab prompts, T = 1.1)

`--engines` picks the engines (default fast,hf; vllm needs the vllm extra). With vllm:
vllm_tok_per_s (vLLM samples + the torch scoring pass, what training gets), vllm_vs_fast,
vllm_startup_s (building the vLLM engine and the first weight push) and vllm_push_s (one
weight push, median of 5). The `lab` shape is the lab model (built on first use) on lab
problems at the lab recipes' temperature 1.1, rows ending at EOS.

Random weights (shapes built in code, no download), sampling at temperature 1 so rows run
to `new_tokens` (random models almost never emit EOS). Throughput = generated tokens / wall
time of one `generate` call, median over `--repeats` (on CUDA after a warm-up call; the
eager HF baselines are timed once; on CPU there is no warm-up and fast runs first).
Reported:
- hf_tok_per_s: the `hf` engine = `model.generate` + its scoring pass (same outputs as fast:
  tokens + logprobs + entropies); speedup_vs_hf = fast / that.
- hf_generate_only_tok_per_s: bare `model.generate` (tokens only), for reference.
- CUDA only: hf_static_compiled_tok_per_s (`generate` with a static cache, which transformers
  auto-compiles), floor_tok_per_s = batch / (bytes read per decode step / measured
  device-to-device copy bandwidth), bytes = parameters + the KV cache at the mean context
  length, and fraction_of_floor = fast / floor.
- greedy_match: fast == hf greedy tokens on a subset (fp32 copy of the model on CUDA, since
  bf16 argmax near-ties between two kernels are not a correctness signal).
Last line: one JSON object.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import time

import torch
import transformers
from transformers import LlamaConfig, LlamaForCausalLM, Qwen3Config, Qwen3ForCausalLM

from mgrpo.rollout import SamplingParams, make_engine

SHAPES = {  # name -> (config class, model class, config kwargs)
    "smollm2-135m": (
        LlamaConfig,
        LlamaForCausalLM,
        dict(
            hidden_size=576,
            num_hidden_layers=30,
            num_attention_heads=9,
            num_key_value_heads=3,
            intermediate_size=1536,
            vocab_size=49152,
            max_position_embeddings=8192,
            rope_theta=100000.0,
            tie_word_embeddings=True,
        ),
    ),
    "qwen3-0.6b": (
        Qwen3Config,
        Qwen3ForCausalLM,
        dict(
            hidden_size=1024,
            num_hidden_layers=28,
            num_attention_heads=16,
            num_key_value_heads=8,
            head_dim=128,
            intermediate_size=3072,
            vocab_size=151936,
            max_position_embeddings=40960,
            rope_theta=1000000.0,
            tie_word_embeddings=True,
        ),
    ),
    "tiny": (
        LlamaConfig,
        LlamaForCausalLM,
        dict(
            hidden_size=64,
            num_hidden_layers=2,
            num_attention_heads=4,
            num_key_value_heads=2,
            intermediate_size=128,
            vocab_size=512,
            max_position_embeddings=1024,
            tie_word_embeddings=False,
        ),
    ),
}
PAD_ID, EOS_ID = 0, 2
DEFAULTS = {  # device -> (shape, prompts, samples, prompt_len, new_tokens, repeats)
    "cpu": ("smollm2-135m", 4, 8, 32, 64, 1),
    "cuda": ("qwen3-0.6b", 32, 8, 128, 256, 2),
}
QUICK = ("tiny", 2, 4, 8, 16, 1)
LAB_TEMPERATURE = 1.1  # the lab recipes' sampling temperature
LAB_TEMPLATE = "Q:{question}=?\nA:"  # the lab recipes' prompt template
COPY_BYTES = 1 << 30  # 1 GiB for the bandwidth probe


def lab_model_and_prompts(num_prompts: int, seed: int):
    """The lab model (real weights, fp32 on CPU) and `num_prompts` lab problems as token ids."""
    from mgrpo.lab import lab_task_problems
    from mgrpo.models.loading import load_model_and_tokenizer

    model, tok = load_model_and_tokenizer("lab", device="cpu")
    problems = lab_task_problems(split="val", n=num_prompts, seed=seed)
    return model, [tok(LAB_TEMPLATE.format(question=p.question))["input_ids"] for p in problems]


def build_model(shape: str, device: torch.device, dtype: torch.dtype, seed: int):
    config_cls, model_cls, kwargs = SHAPES[shape]
    config = config_cls(pad_token_id=PAD_ID, bos_token_id=1, eos_token_id=EOS_ID, **kwargs)
    with torch.random.fork_rng(devices=[]), torch.device(device):
        torch.manual_seed(seed)
        model = model_cls(config)
    model = model.to(dtype=dtype).eval()
    model.generation_config.pad_token_id = PAD_ID
    model.generation_config.eos_token_id = EOS_ID
    return model


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def timed(fn, device: torch.device, repeats: int, warmup: bool = True) -> tuple[float, object]:
    """Median wall seconds of fn() over `repeats` calls (after one warm-up call if `warmup`)."""
    out = fn() if warmup else None
    times = []
    for _ in range(repeats):
        sync(device)
        start = time.perf_counter()
        out = fn()
        sync(device)
        times.append(time.perf_counter() - start)
    return statistics.median(times), out


def copy_bandwidth(device: torch.device) -> float:
    """Device-to-device copy bandwidth in bytes/s (read + write counted)."""
    src = torch.empty(COPY_BYTES, dtype=torch.uint8, device=device)
    dst = torch.empty_like(src)
    dst.copy_(src)
    sync(device)
    reps = 10
    start = time.perf_counter()
    for _ in range(reps):
        dst.copy_(src)
    sync(device)
    return 2 * COPY_BYTES * reps / (time.perf_counter() - start)


def floor_tok_per_s(model, batch: int, prompt_len: int, new_tokens: int, bw: float) -> float:
    """Bandwidth floor: each decode step reads all weights once plus the KV cache."""
    cfg = model.config
    elem = next(model.parameters()).element_size()
    params = sum(p.numel() for p in model.parameters())  # tied embeddings counted once
    if not cfg.tie_word_embeddings:  # the input embedding is gathered, not read in full
        params -= model.get_input_embeddings().weight.numel()
    head_dim = getattr(cfg, "head_dim", None) or cfg.hidden_size // cfg.num_attention_heads
    kv_per_token = cfg.num_hidden_layers * 2 * cfg.num_key_value_heads * head_dim * elem
    mean_ctx = prompt_len + new_tokens / 2
    step_bytes = params * elem + batch * mean_ctx * kv_per_token
    return batch / (step_bytes / bw)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    ap.add_argument("--quick", action="store_true", help="tiny model, a few tokens (smoke run)")
    ap.add_argument("--shape", choices=sorted(SHAPES) + ["lab"])
    ap.add_argument("--engines", default="fast,hf",
                    help="comma list of engines to time: fast, hf, vllm (default fast,hf)")
    ap.add_argument("--prompts", type=int)
    ap.add_argument("--samples", type=int, help="samples per prompt (n)")
    ap.add_argument("--prompt-len", type=int)
    ap.add_argument("--new-tokens", type=int)
    ap.add_argument("--repeats", type=int)
    ap.add_argument("--threads", type=int, help="torch CPU threads")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--skip-compiled", action="store_true", help="CUDA: skip the compiled baseline")
    ap.add_argument(
        "--skip-generate-only", action="store_true", help="skip the bare model.generate timing"
    )
    ap.add_argument("--fast-compile", action="store_true", help="also time fast with compile=True")
    args = ap.parse_args(argv)

    if args.device == "cuda" and not torch.cuda.is_available():
        print("--device cuda requested but CUDA is not available", file=sys.stderr)
        return 2
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    shape, num_prompts, n, prompt_len, new_tokens, repeats = (
        QUICK if args.quick else DEFAULTS[args.device]
    )
    shape = args.shape or shape
    num_prompts = args.prompts or num_prompts
    n = args.samples or n
    prompt_len = args.prompt_len or prompt_len
    new_tokens = args.new_tokens or new_tokens
    repeats = args.repeats or repeats
    dtype = torch.bfloat16 if device.type == "cuda" else torch.float32
    engines = [e.strip() for e in args.engines.split(",") if e.strip()]
    if "fast" not in engines or any(e not in ("fast", "hf", "vllm") for e in engines):
        print(f"--engines must list fast and any of hf, vllm; got {args.engines!r}", file=sys.stderr)
        return 2
    if shape == "lab":  # real weights and prompts: rows end at EOS, T = 1.1
        model, prompts = lab_model_and_prompts(num_prompts, args.seed)
        prompt_len = max(len(p) for p in prompts)
        params = SamplingParams(max_new_tokens=new_tokens, temperature=LAB_TEMPERATURE,
                                seed=args.seed, stop_token_ids=(EOS_ID,))
    else:
        model = build_model(shape, device, dtype, args.seed)
        gen = torch.Generator().manual_seed(args.seed)
        prompts = torch.randint(3, model.config.vocab_size, (num_prompts, prompt_len),
                                generator=gen).tolist()
        params = SamplingParams(max_new_tokens=new_tokens, temperature=1.0, seed=args.seed)
    batch = num_prompts * n
    result: dict = {
        "device": torch.cuda.get_device_name()
        if device.type == "cuda"
        else platform.processor() or platform.machine(),
        "model_shape": shape,
        "dtype": str(dtype).replace("torch.", ""),
        "batch": batch,
        "prompts": num_prompts,
        "samples_per_prompt": n,
        "prompt_len": prompt_len,
        "new_tokens": new_tokens,
        "repeats": repeats,
        "threads": torch.get_num_threads(),
        "torch": torch.__version__,
        "transformers": transformers.__version__,
        "python": platform.python_version(),
        "cpu_count": os.cpu_count(),
    }
    rows = []

    def run(name: str, fn, *, slow_baseline: bool = False) -> float:
        # eager HF baselines on CUDA: the device is already warm, one timed call is enough;
        # on CPU nothing is warmed up (the first timed engine, fast, pays the one-time costs)
        cheap = slow_baseline and device.type == "cuda"
        warm = device.type == "cuda" and not cheap
        seconds, out = timed(fn, device, 1 if cheap else repeats, warmup=warm)
        tokens = int(out.lengths.sum()) if hasattr(out, "lengths") else out
        rate = tokens / seconds
        rows.append((name, seconds, tokens, rate))
        print(f"  {name:<28} {seconds:8.2f} s {tokens:8d} tok {rate:10.1f} tok/s", flush=True)
        return rate

    print(
        f"rollout benchmark: {shape} on {result['device']}, {batch} seqs, {prompt_len}+{new_tokens}"
    )
    hf = make_engine("hf", model, pad_token_id=PAD_ID)
    fast = make_engine("fast", model, pad_token_id=PAD_ID)
    vllm = None
    if "vllm" in engines:
        start = time.perf_counter()
        vllm = make_engine("vllm", model, pad_token_id=PAD_ID, seed=args.seed)
        result["vllm_startup_s"] = time.perf_counter() - start
        pushes = []
        for _ in range(5):
            start = time.perf_counter()
            vllm.version.bump()
            vllm.sync_weights()
            pushes.append(time.perf_counter() - start)
        result["vllm_push_s"] = statistics.median(pushes)
    labels = {"fast": "fast", "hf": "hf (generate + score)", "vllm": "vllm (+ score)"}
    calls = {"fast": fast.generate, "hf": hf.generate, "vllm": vllm.generate if vllm else None}
    if device.type == "cpu" and repeats > 1:  # shared CPU: interleave A B C A B C, medians
        rates: dict[str, list[float]] = {e: [] for e in engines}
        for _ in range(repeats):
            for name in engines:
                start = time.perf_counter()
                out = calls[name](prompts, n, params)
                rates[name].append(int(out.lengths.sum()) / (time.perf_counter() - start))
        for name in engines:
            print(f"  {labels[name]:<28} {statistics.median(rates[name]):10.1f} tok/s "
                  f"(median, interleaved)")
            result[f"{name}_tok_per_s"] = statistics.median(rates[name])
        result["interleaved"] = True
    else:
        result["fast_tok_per_s"] = run("fast", lambda: fast.generate(prompts, n, params))
        if vllm is not None:
            result["vllm_tok_per_s"] = run(labels["vllm"], lambda: vllm.generate(prompts, n, params))
    if device.type == "cuda":
        eager = make_engine("fast", model, pad_token_id=PAD_ID, cuda_graph=False)
        result["fast_eager_tok_per_s"] = run(
            "fast (no CUDA graph)", lambda: eager.generate(prompts, n, params)
        )
    if "hf_tok_per_s" not in result and "hf" in engines:
        result["hf_tok_per_s"] = run(
            "hf (generate + score)", lambda: hf.generate(prompts, n, params), slow_baseline=True
        )

    repeated = torch.tensor([p for p in prompts for _ in range(n)], device=device)
    gen_kwargs = dict(
        attention_mask=torch.ones_like(repeated),
        max_new_tokens=new_tokens,
        min_new_tokens=new_tokens,  # rows run to the end, like the engines on random weights
        do_sample=True,
        temperature=1.0,
        top_p=1.0,
        top_k=0,
        pad_token_id=PAD_ID,
    )

    def raw_generate(**extra):
        with torch.no_grad():
            out = model.generate(repeated, **gen_kwargs, **extra)
        return (out.shape[1] - prompt_len) * out.shape[0]

    if "hf" in engines:
        result["speedup_vs_hf"] = result["fast_tok_per_s"] / result["hf_tok_per_s"]
    if vllm is not None:
        result["vllm_vs_fast"] = result["vllm_tok_per_s"] / result["fast_tok_per_s"]
    if not args.skip_generate_only and shape != "lab":
        result["hf_generate_only_tok_per_s"] = run(
            "hf generate only", raw_generate, slow_baseline=True
        )
        result["speedup_vs_hf_generate_only"] = (
            result["fast_tok_per_s"] / result["hf_generate_only_tok_per_s"]
        )

    if args.fast_compile:
        try:
            fc = make_engine("fast", model, pad_token_id=PAD_ID, compile=True)
            result["fast_compiled_tok_per_s"] = run(
                "fast compile=True", lambda: fc.generate(prompts, n, params)
            )
        except Exception as err:  # noqa: BLE001 - report why, keep the benchmark going
            result["fast_compiled_error"] = f"{type(err).__name__}: {err}"[:300]

    if device.type == "cuda":
        if args.skip_compiled:
            result["hf_static_compiled_error"] = "skipped (--skip-compiled)"
        else:
            try:
                result["hf_static_compiled_tok_per_s"] = run(
                    "hf static+compiled", lambda: raw_generate(cache_implementation="static")
                )
                result["speedup_vs_hf_static_compiled"] = (
                    result["fast_tok_per_s"] / result["hf_static_compiled_tok_per_s"]
                )
            except Exception as err:  # noqa: BLE001 - report why, keep the benchmark going
                result["hf_static_compiled_error"] = f"{type(err).__name__}: {err}"[:300]
        bw = copy_bandwidth(device)
        result["copy_bandwidth_gb_s"] = bw / 1e9
        result["floor_tok_per_s"] = floor_tok_per_s(model, batch, prompt_len, new_tokens, bw)
        result["fraction_of_floor"] = result["fast_tok_per_s"] / result["floor_tok_per_s"]

    # greedy agreement on a subset (fp32 so argmax near-ties are not kernel noise)
    check_model = model if dtype == torch.float32 else model.float()
    subset = [p[: min(prompt_len, 16)] for p in prompts[:2]]
    greedy = SamplingParams(max_new_tokens=min(new_tokens, 16), temperature=0)
    a = make_engine("hf", check_model, pad_token_id=PAD_ID).generate(subset, 1, greedy)
    b = make_engine("fast", check_model, pad_token_id=PAD_ID).generate(subset, 1, greedy)
    result["greedy_match"] = bool(torch.equal(a.response_ids, b.response_ids))
    if vllm is not None and check_model is model:
        c = vllm.generate(subset, 1, greedy)
        result["vllm_greedy_match"] = bool(torch.equal(a.response_ids, c.response_ids))
        vllm.close()
    result["greedy_match_dtype"] = "float32"
    ratios = [f"{key} {result[key]:.2f}x" for key in ("speedup_vs_hf", "vllm_vs_fast")
              if key in result]
    print(f"  {', '.join(ratios)}, greedy_match={result['greedy_match']}")
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
