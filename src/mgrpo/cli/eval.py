"""`mgrpo eval`: benchmark accuracy (avg@k, pass@1..k, maj@k) with the paper's protocol.

CLI: `mgrpo eval MODEL [-b BENCH,...] [--samples K] [--temperature T] [--top-p P]
[--max-new-tokens N] [--limit N] [--protocol paper] [-o OUT] [--engine hf|fast|vllm]
[--batch-size B] [--benchmark-file PATH --kind math|choice|code] [--system-prompt TEXT]
[--chat-template-kwargs JSON]`; `mgrpo eval --list` (no model) lists the benchmarks, where
their data comes from and the columns a user file needs. OUT gets `results.json` (per
benchmark: metrics, each with its standard error `<metric>_stderr`, wall time, generation
time, overhead, exact settings), `lm_eval_results.json` (the same figures in
lm-evaluation-harness's results layout, `mgrpo.eval.formats`) and
`samples/<bench>.jsonl` (one line per sample). A markdown table is printed.

Protocol: sampling defaults are the paper's evaluation settings (temperature 0.8, top-p 1,
up to 3072 new tokens) with 1 sample per problem; `--protocol paper` additionally uses
avg@8 on AIME24/25 and GPQA-Diamond. Flags given explicitly override the protocol and the
override is recorded in results.json. Departure from the paper: the paper does not state
its top-p or its stop rule; we use top-p 1 and stop at the tokenizer's EOS tokens.
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import time
from pathlib import Path
from typing import Any

from mgrpo import __version__
from mgrpo.answers import AnswerChecker
from mgrpo.data.benchmarks import (
    BENCHMARKS,
    BenchmarkDataMissing,
    custom_benchmark,
    get_benchmark,
    load_benchmark,
)
from mgrpo.data.datasets import DatasetError
from mgrpo.eval.formats import LM_EVAL_RESULTS, benchmark_listing, lm_eval_results
from mgrpo.eval.runner import DEFAULT_BATCH_SIZE, evaluate_benchmark
from mgrpo.files import write_text_atomic
from mgrpo.kernel_path import LAB_KERNEL_MODES, is_lab_model_name, pin_lab_kernels

PROTOCOLS = ("default", "paper")
PAPER_TEMPERATURE = 0.8
PAPER_TOP_P = 1.0
PAPER_MAX_NEW_TOKENS = 3072
DEFAULT_BENCHMARKS = "math500"
DEFAULT_OUTPUT = "eval-results"
DEFAULT_ANSWER_WORKERS = 2


def configure_parser(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "model",
        nargs="?",
        help="HF model directory (e.g. a checkpoint), hub id, or embedded name (tiny, lab, smollm2-135m)",
    )
    parser.add_argument(
        "--lab-kernels", choices=LAB_KERNEL_MODES, default="avx2",
        help="x86 CPU kernel path of a lab model (avx2: pinned, default; native: this CPU's own)",
    )
    parser.add_argument(
        "-b",
        "--benchmarks",
        default=None,
        help=f"comma-separated benchmark names (default {DEFAULT_BENCHMARKS}); see --list",
    )
    parser.add_argument(
        "--benchmark-file",
        default=None,
        help="data file for a custom set (with --kind) or for the one user-supplied benchmark named by -b",
    )
    parser.add_argument(
        "--kind",
        choices=("math", "gsm8k", "choice", "code"),
        default=None,
        help="answer kind of --benchmark-file (makes a custom benchmark)",
    )
    parser.add_argument(
        "--samples",
        type=int,
        default=None,
        help="samples per problem k (default: 1, or the paper's count with --protocol paper)",
    )
    parser.add_argument(
        "--temperature",
        type=float,
        default=None,
        help=f"sampling temperature (default {PAPER_TEMPERATURE}; 0 = greedy)",
    )
    parser.add_argument(
        "--top-p", type=float, default=None, help=f"nucleus sampling (default {PAPER_TOP_P})"
    )
    parser.add_argument("--top-k", type=int, default=0, help="top-k sampling (0 = off)")
    parser.add_argument(
        "--max-new-tokens",
        type=int,
        default=None,
        help=f"response length cap (default {PAPER_MAX_NEW_TOKENS})",
    )
    parser.add_argument(
        "--limit",
        type=int,
        default=None,
        help="evaluate only the first N problems of each benchmark",
    )
    parser.add_argument(
        "--protocol",
        choices=PROTOCOLS,
        default="default",
        help="'paper': avg@8 on AIME24/25 and GPQA-Diamond, 1 sample elsewhere, T=0.8, 3072 tokens",
    )
    parser.add_argument(
        "-o",
        "--output",
        default=DEFAULT_OUTPUT,
        help=f"output directory (default ./{DEFAULT_OUTPUT})",
    )
    parser.add_argument(
        "--engine", choices=("hf", "fast", "vllm"), default="fast",
        help="rollout engine (default fast; vllm needs the vllm extra, docs/engines.md)"
    )
    parser.add_argument(
        "--batch-size",
        type=int,
        default=DEFAULT_BATCH_SIZE,
        help=f"prompts per generate call (default {DEFAULT_BATCH_SIZE})",
    )
    parser.add_argument(
        "--template",
        default="default",
        help="prompt template: default, chat, plain, raw, or a string with {question}",
    )
    parser.add_argument(
        "--system-prompt", default=None, help="a system turn before every prompt (see data.system_prompt)"
    )
    parser.add_argument(
        "--chat-template-kwargs",
        default=None,
        metavar="JSON",
        help='extra chat-template arguments as a JSON object, e.g. \'{"enable_thinking": false}\'',
    )
    parser.add_argument(
        "--seed", type=int, default=0, help="sampling seed and multiple-choice shuffle seed"
    )
    parser.add_argument(
        "--dtype",
        default="auto",
        help="auto (bf16 on CUDA, fp32 on CPU), float32, bfloat16, float16",
    )
    parser.add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:N")
    parser.add_argument(
        "--kv-cache-gb",
        type=float,
        default=None,
        help="GiB one fast-engine decode loop may use; batches over it are split "
        "(default: 80%% of free CUDA memory, no limit on CPU; docs/memory.md)",
    )
    parser.add_argument(
        "--answer-timeout",
        type=float,
        default=5.0,
        help="seconds per answer comparison before it counts as wrong",
    )
    parser.add_argument(
        "--answer-workers",
        type=int,
        default=DEFAULT_ANSWER_WORKERS,
        help=f"math-verify worker processes (default {DEFAULT_ANSWER_WORKERS})",
    )
    parser.add_argument(
        "--list", action="store_true", help="list the benchmarks, their data and columns, and exit (no model)"
    )


def _chat_kwargs(text: str | None) -> dict[str, Any] | None:
    if text is None:
        return None
    try:
        value = json.loads(text)
    except ValueError as exc:
        raise ValueError(f"--chat-template-kwargs: not valid JSON ({exc})") from None
    if not isinstance(value, dict):
        raise ValueError(f"--chat-template-kwargs: expected a JSON object, got {text!r}")
    return value


def _fail(message: str) -> int:
    print(f"mgrpo eval: error: {message}", file=sys.stderr)
    return 2


def _resolve_benchmarks(args: argparse.Namespace) -> list[tuple[Any, str | None]]:
    """[(Benchmark, data file or None)], validated before any model is loaded."""
    if args.kind is not None:
        if args.benchmark_file is None:
            raise ValueError("--kind needs --benchmark-file PATH")
        if not Path(args.benchmark_file).is_file():
            raise ValueError(f"--benchmark-file {args.benchmark_file}: file not found")
        custom = [(custom_benchmark(args.benchmark_file, args.kind), args.benchmark_file)]
        named = [(get_benchmark(n), None) for n in (args.benchmarks or "").split(",") if n.strip()]
        return named + custom
    names = [n.strip() for n in (args.benchmarks or DEFAULT_BENCHMARKS).split(",") if n.strip()]
    if not names:
        raise ValueError("-b/--benchmarks names no benchmark")
    benches = [get_benchmark(n) for n in names]
    if args.benchmark_file is not None and len(benches) != 1:
        raise ValueError("--benchmark-file without --kind needs exactly one benchmark in -b")
    return [(b, args.benchmark_file) for b in benches]


def _pct(r: dict[str, Any], key: str) -> str:
    """`12.3 ± 1.4` (percent, with the standard error when there is one), or `-`."""
    if r.get(key) is None:
        return "-"
    stderr = r.get(f"{key}_stderr")
    return f"{100 * r[key]:.1f}" + ("" if stderr is None else f" ± {100 * stderr:.1f}")


def markdown_table(results: dict[str, dict[str, Any]]) -> str:
    """One row per benchmark: n, k, avg@k, pass@k, maj@k (each ± its standard error), mean
    length, wall and overhead."""
    lines = [
        "| benchmark | n | k | avg@k | pass@k | maj@k | mean len | wall s | overhead |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for name, r in results.items():
        lines.append(
            f"| {name} | {r['n_problems']} | {r['samples']} | {_pct(r, 'avg@k')} | "
            f"{_pct(r, 'pass@k')} | {_pct(r, 'maj@k')} | {r['response_length_mean']:.0f} | "
            f"{r['wall_s']:.1f} | {100 * r['overhead_fraction']:.1f}% |"
        )
    return "\n".join(lines)


def _write_json_atomic(path: Path, data: Any) -> None:
    write_text_atomic(path, json.dumps(data, indent=2, ensure_ascii=False) + "\n")


def _flag_error(args: argparse.Namespace) -> str | None:
    """The first out-of-range flag, as a message; None when all are valid."""
    for flag, value, low in (
        ("--samples", args.samples, 1),
        ("--max-new-tokens", args.max_new_tokens, 1),
        ("--limit", args.limit, 1),
        ("--batch-size", args.batch_size, 1),
        ("--answer-workers", args.answer_workers, 1),
    ):
        if value is not None and value < low:
            return f"{flag} must be >= {low}, got {value}"
    if args.temperature is not None and args.temperature < 0:
        return f"--temperature must be >= 0, got {args.temperature}"
    if args.top_p is not None and not 0 < args.top_p <= 1:
        return f"--top-p must be in (0, 1], got {args.top_p}"
    if args.kv_cache_gb is not None and not args.kv_cache_gb > 0:
        return f"--kv-cache-gb must be > 0, got {args.kv_cache_gb}"
    return None


def _load_data(args: argparse.Namespace) -> list[tuple[Any, str | None, list[Any], float]]:
    """[(Benchmark, data file, records, load seconds)]: every data set is loaded (and so
    validated) before the model, so a bad file fails in seconds, not after hours."""
    loaded: list[tuple[Any, str | None, list[Any], float]] = []
    for bench, file in _resolve_benchmarks(args):
        if any(bench.name == b.name for b, *_ in loaded):
            raise ValueError(f"benchmark {bench.name!r} named twice")
        t0 = time.perf_counter()
        records = load_benchmark(bench, file=file, limit=args.limit, seed=args.seed)
        loaded.append((bench, file, records, time.perf_counter() - t0))
    return loaded


def _sampling_params(args: argparse.Namespace, model: Any, tokenizer: Any) -> Any:
    """The protocol's sampling settings, each overridden by its flag when given."""
    # lazy, start-up: the targets import torch
    from mgrpo.rollout import SamplingParams
    from mgrpo.rollout.base import stop_token_ids

    return SamplingParams(
        max_new_tokens=args.max_new_tokens or PAPER_MAX_NEW_TOKENS,
        temperature=PAPER_TEMPERATURE if args.temperature is None else args.temperature,
        top_p=PAPER_TOP_P if args.top_p is None else args.top_p,
        top_k=args.top_k,
        stop_token_ids=stop_token_ids(model, tokenizer),
        seed=args.seed,
    )


def _settings(args: argparse.Namespace, model: Any, params: Any, chat_kwargs: Any,
              max_prompt_tokens: int | None) -> dict[str, Any]:
    """Everything that determines the figures, recorded in results.json."""
    import torch  # lazy, start-up: this module imports without torch (`mgrpo --help`)

    device = next(model.parameters()).device
    return {
        "mgrpo_version": __version__,
        "torch_version": torch.__version__,
        "model": args.model,
        "protocol": args.protocol,
        "engine": args.engine,
        "template": args.template,
        "system_prompt": args.system_prompt,
        "chat_template_kwargs": chat_kwargs,
        "dtype": str(next(model.parameters()).dtype).replace("torch.", ""),
        "device": torch.cuda.get_device_name(device)
        if device.type == "cuda"
        else platform.processor() or "cpu",
        "temperature": params.temperature,
        "top_p": params.top_p,
        "top_k": params.top_k,
        "max_new_tokens": params.max_new_tokens,
        "stop_token_ids": list(params.stop_token_ids),
        "seed": args.seed,
        "limit": args.limit,
        "batch_size": args.batch_size,
        "max_prompt_tokens": max_prompt_tokens,
        "answer_timeout_s": args.answer_timeout,
        "answer_workers": args.answer_workers,
    }


def _write_samples(path: Path, rows: list[dict[str, Any]]) -> None:
    with path.open("w", encoding="utf-8") as fh:
        for row in rows:
            fh.write(json.dumps(row, ensure_ascii=False) + "\n")


def run(args: argparse.Namespace) -> int:
    if args.list:
        print(benchmark_listing(BENCHMARKS.values()))
        return 0
    if args.model is None:
        return _fail("the following arguments are required: model (or --list to see the benchmarks)")
    try:
        chat_kwargs = _chat_kwargs(args.chat_template_kwargs)
        problem = _flag_error(args)
        if problem is not None:
            return _fail(problem)
        data = _load_data(args)
    except (ValueError, BenchmarkDataMissing, DatasetError) as exc:
        return _fail(str(exc))

    if is_lab_model_name(args.model):  # before torch runs a kernel (may re-execute)
        pin_lab_kernels(args.lab_kernels, args.command_argv)
    # lazy, start-up: the targets import torch
    from mgrpo.models.loading import load_model_and_tokenizer
    from mgrpo.rollout import make_engine

    try:
        model, tokenizer = load_model_and_tokenizer(args.model, dtype=args.dtype, device=args.device)
    except (OSError, ValueError) as exc:
        return _fail(f"cannot load model {args.model!r}: {exc}")
    # lazy, start-up: imports torch (vLLM itself is imported only by a vllm engine)
    from mgrpo.rollout.vllm_engine import EngineUnavailable

    try:
        engine = make_engine(  # fast: graphs and KV workspace kept across the batches
            args.engine, model, pad_token_id=tokenizer.pad_token_id,
            kv_cache_gb=args.kv_cache_gb, keep_workspace=True, seed=args.seed,
        )
    except EngineUnavailable as exc:
        return _fail(str(exc))
    params = _sampling_params(args, model, tokenizer)
    context = getattr(model.config, "max_position_embeddings", None)
    max_prompt_tokens = None if context is None else max(1, context - params.max_new_tokens)
    settings = _settings(args, model, params, chat_kwargs, max_prompt_tokens)
    out = Path(args.output)
    (out / "samples").mkdir(parents=True, exist_ok=True)
    checker = AnswerChecker(timeout_s=args.answer_timeout, workers=args.answer_workers)
    results: dict[str, dict[str, Any]] = {}
    try:
        for bench, file, records, load_s in data:
            k = args.samples or (bench.paper_samples if args.protocol == "paper" else 1)
            rows: list[dict[str, Any]] = []
            metrics = evaluate_benchmark(
                engine, tokenizer, bench, params=params, samples=k, records=records,
                load_s=load_s, sample_rows=rows, template=args.template, checker=checker,
                batch_size=args.batch_size, max_prompt_tokens=max_prompt_tokens,
                system_prompt=args.system_prompt, chat_template_kwargs=chat_kwargs,
            )
            metrics.pop("benchmark")
            _write_samples(out / "samples" / f"{bench.name}.jsonl", rows)
            results[bench.name] = {
                **metrics,
                "settings": {**settings, "benchmark": bench.name, "samples": k, "data_file": file},
            }
            _write_json_atomic(out / "results.json", {"settings": settings, "benchmarks": results})
            _write_json_atomic(out / LM_EVAL_RESULTS, lm_eval_results(results, settings))
    finally:
        checker.close()
        engine.close()
    table = markdown_table(results)
    (out / "results.md").write_text(table + "\n", encoding="utf-8")
    print(table)
    print(f"wrote {out / 'results.json'}, {out / LM_EVAL_RESULTS} and {out / 'samples'}/")
    return 0
