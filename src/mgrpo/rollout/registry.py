"""Building an engine by name: `make_engine(name, model, pad_token_id=..., **options)` over the
`ENGINES` registry (`rollout.base`; each engine class registers at its definition).

"fast" on a model it does not support falls back to "hf" with a one-line warning.
"""

from __future__ import annotations

import warnings

from torch import nn

from mgrpo.rollout.base import ENGINES, RolloutEngine
from mgrpo.rollout.decoder import unsupported_reason
from mgrpo.rollout.fast_engine import FastEngine  # noqa: F401 - registers "fast"
from mgrpo.rollout.hf_engine import HFEngine  # registers "hf"

__all__ = ["ENGINES", "make_engine"]


def make_engine(name: str, model: nn.Module, *, pad_token_id: int, **options) -> RolloutEngine:
    """Build engine `name` ("hf" | "fast") over the live `model` (shared, never copied).

    `options` go to the engine (fast: compile, compile_mode, check_every, compact_ratio,
    kv_cache_gb, keep_workspace, max_graphs; both: score_chunk_tokens, score_batch_tokens).
    `kv_cache_gb` and `keep_workspace` are dropped for the hf engine (`model.generate`
    decodes the whole batch at once and keeps nothing between calls).
    """
    engine = ENGINES.get(name)  # an unknown name lists the valid ones
    fast_only = ("compile", "compile_mode", "check_every", "compact_ratio", "kv_cache_gb",
                 "keep_workspace", "max_graphs")
    if name == "hf":
        options = {k: v for k, v in options.items() if k not in ("kv_cache_gb", "keep_workspace")}
    if name == "fast":
        reason = unsupported_reason(model)
        if reason is not None:
            warnings.warn(
                f"fast engine does not support {reason}; falling back to the hf engine",
                stacklevel=2,
            )
            options = {k: v for k, v in options.items() if k not in fast_only}
            return HFEngine(model, pad_token_id=pad_token_id, **options)
    return engine(model, pad_token_id=pad_token_id, **options)
