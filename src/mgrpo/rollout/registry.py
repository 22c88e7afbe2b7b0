"""Building an engine by name: `make_engine(name, model, pad_token_id=..., **options)` over the
`ENGINES` registry (`rollout.base`; each engine class registers at its definition).

"fast" on a model it does not support falls back to "hf" with a one-line warning. "vllm"
imports vLLM only when built (an optional extra; `rollout.vllm_engine`).
"""

from __future__ import annotations

import warnings

from torch import nn

from mgrpo.rollout.base import ENGINES, RolloutEngine
from mgrpo.rollout.decoder import unsupported_reason
from mgrpo.rollout.fast_engine import FastEngine  # noqa: F401 - registers "fast"
from mgrpo.rollout.hf_engine import HFEngine  # noqa: F401 - registers "hf"
from mgrpo.rollout.vllm_engine import VLLMEngine  # registers "vllm"
from mgrpo.rollout.weight_sync import WeightVersion

__all__ = ["ENGINES", "make_engine"]

FAST_ONLY = ("compile", "compile_mode", "check_every", "compact_ratio", "keep_workspace",
             "max_graphs", "cuda_graph", "attn_bucket", "fuse_weights")
VLLM_ONLY = ("share_with", "weight_scope", "gpu_memory_utilization", "enforce_eager",
             "sleep_mode", "seed")


def make_engine(name: str, model: nn.Module, *, pad_token_id: int,
                version: WeightVersion | None = None, **options) -> RolloutEngine:
    """Build engine `name` ("hf" | "fast" | "vllm") over the live `model` (shared, never copied
    by hf and fast; vllm pushes a copy of its weights into vLLM).

    `options` go to the engine (fast: compile, compile_mode, check_every, compact_ratio,
    kv_cache_gb, keep_workspace, max_graphs; vllm: kv_cache_gb, share_with, weight_scope,
    gpu_memory_utilization, enforce_eager, sleep_mode, seed; all: score_chunk_tokens,
    score_batch_tokens); options of another engine are dropped, and `kv_cache_gb` /
    `keep_workspace` for hf (`model.generate` keeps nothing between calls). `version`: the
    counter of changes to the weights the engine samples (the trainer bumps it; a vllm engine
    refuses to sample while its pushed copy is behind).
    """
    ENGINES.get(name)  # an unknown name lists the valid ones
    dropped = {"hf": (*FAST_ONLY, *VLLM_ONLY, "kv_cache_gb"), "fast": VLLM_ONLY,
               "vllm": FAST_ONLY}[name]
    options = {k: v for k, v in options.items() if k not in dropped}
    if name == "vllm":
        return VLLMEngine(model, pad_token_id=pad_token_id, version=version, **options)
    if name == "fast":
        reason = unsupported_reason(model)
        if reason is not None:
            warnings.warn(
                f"fast engine does not support {reason}; falling back to the hf engine",
                stacklevel=2,
            )
            name = "hf"
            options = {k: v for k, v in options.items()
                       if k not in (*FAST_ONLY, "kv_cache_gb")}
    engine = ENGINES.get(name)(model, pad_token_id=pad_token_id, **options)
    if version is not None:
        engine.version = version
    return engine
