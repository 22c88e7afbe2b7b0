"""`mgrpo eval` output for other tools, and the `--list` text.

`lm_eval_results(results, settings)` lays the figures of `results.json` out as
lm-evaluation-harness writes its `results_*.json` (so `lm_eval.utils.make_table`, and the
dashboards and scripts that read lm-eval results, read it unchanged):

    {"results": {bench: {"alias": bench, "exact_match,none": avg@k,
                         "exact_match_stderr,none": ..., "pass@1,none": ..., "maj@k,none": ...}},
     "versions": {bench: "mgrpo-<version>"}, "n-shot": {bench: 0},
     "higher_is_better": {bench: {metric: true}},
     "n-samples": {bench: {"original": n, "effective": n}},
     "configs": {bench: {"task": bench, "output_type": "generate_until", "repeats": k,
                         "generation_kwargs": {...}}},
     "config": {"model": "mgrpo", "model_args": <model>, ...}}

Metric names: `exact_match` is avg@k (the mean correctness of all samples, the name lm-eval's
math and GSM8K tasks use); `pass@j` and `maj@k` keep their names. The filter is `none`.
A standard error that is undefined (one problem) is written "N/A", as lm-eval does.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from mgrpo.data.benchmarks import DATA_DIR_ENV
from mgrpo.data.benchmarks import _env_var as env_var_name

LM_EVAL_RESULTS = "lm_eval_results.json"
FILTER = "none"


def _metrics(r: dict[str, Any]) -> dict[str, Any]:
    names = {"exact_match": "avg@k"}
    names.update({f"pass@{j}": f"pass@{j}" for j in range(1, int(r["samples"]) + 1)})
    if r.get("maj@k") is not None:
        names["maj@k"] = "maj@k"
    out: dict[str, Any] = {}
    for lm_name, ours in names.items():
        stderr = r.get(f"{ours}_stderr")
        out[f"{lm_name},{FILTER}"] = r[ours]
        out[f"{lm_name}_stderr,{FILTER}"] = "N/A" if stderr is None else stderr
    return out


def lm_eval_results(results: dict[str, dict[str, Any]], settings: dict[str, Any]) -> dict[str, Any]:
    """`results.json`'s benchmarks in lm-evaluation-harness's results layout (module docstring)."""
    generation = {
        "temperature": settings.get("temperature"),
        "top_p": settings.get("top_p"),
        "top_k": settings.get("top_k"),
        "max_gen_toks": settings.get("max_new_tokens"),
        "do_sample": bool(settings.get("temperature")),
    }
    out: dict[str, Any] = {"results": {}, "versions": {}, "n-shot": {}, "higher_is_better": {},
                           "n-samples": {}, "configs": {}}
    for name, r in results.items():
        metrics = _metrics(r)
        out["results"][name] = {"alias": name, **metrics}
        out["versions"][name] = f"mgrpo-{settings.get('mgrpo_version')}"
        out["n-shot"][name] = 0
        out["higher_is_better"][name] = {k.split(",")[0]: True for k in metrics if "_stderr" not in k}
        out["n-samples"][name] = {"original": r["n_problems"], "effective": r["n_problems"]}
        out["configs"][name] = {"task": name, "output_type": "generate_until",
                                "repeats": r["samples"], "num_fewshot": 0,
                                "generation_kwargs": generation,
                                "metadata": {"template": settings.get("template"),
                                             "data_file": r.get("settings", {}).get("data_file")}}
    out["config"] = {"model": "mgrpo", "model_args": settings.get("model"),
                     "batch_size": settings.get("batch_size"), "device": settings.get("device"),
                     "random_seed": settings.get("seed"), "gen_kwargs": generation}
    return out


def benchmark_listing(benchmarks: Iterable[Any]) -> str:
    """`mgrpo eval --list`: per benchmark its answer kind, the paper's samples per problem,
    where its data comes from, and (user-supplied sets) the columns a data file needs."""
    lines = [f"{'benchmark':14s} {'kind':7s} {'k':>2s}  {'data':34s} description"]
    for bench in benchmarks:
        if bench.source.startswith("vendored:"):
            data = f"vendored ({bench.source.split(':', 1)[1]}.jsonl)"
        else:
            data = "your file (see below)"
        lines.append(f"{bench.name:14s} {bench.kind:7s} {bench.paper_samples:>2d}  {data:34s} "
                     f"{bench.description}")
        if not bench.source.startswith("vendored:"):
            where = ["--benchmark-file PATH", f"${env_var_name(bench.name)}",
                     f"${DATA_DIR_ENV}/{bench.name}.jsonl"]
            if bench.hub_id:
                where.append(f"hub {bench.hub_id} [{bench.hub_split}] (needs `datasets`)")
            lines.append(f"{'':14s}   data from: {', '.join(where)}")
            lines.append(f"{'':14s}   columns:   {bench.columns}")
    lines.append("k: samples per problem under --protocol paper (avg@k). "
                 "Any other file: --benchmark-file PATH --kind math|gsm8k|choice|code.")
    return "\n".join(lines)
