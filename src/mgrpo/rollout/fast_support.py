"""What the `fast` engine can run: model checks, joint-loop compatibility, row layout.

`unsupported_reason(model)` says why a model cannot use the fast engine (the registry then
falls back to `hf`); `joint_mismatch` says why two engines cannot share one decode loop;
`prefill_rows` lays out the rollout rows of a joint loop (group-major, then prompt-major).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch
from torch import nn

from mgrpo.rollout.params import SamplingParams

if TYPE_CHECKING:  # annotations only: fast_engine imports this module
    from mgrpo.rollout.fast_engine import FastEngine

__all__ = ["JOINT_CONFIG_KEYS", "SUPPORTED_MODEL_TYPES", "joint_mismatch", "prefill_rows",
           "unsupported_reason"]

SUPPORTED_MODEL_TYPES = ("llama", "qwen2", "qwen3")
LAYER_MODULES = ("input_layernorm", "post_attention_layernorm", "mlp", "self_attn")
ATTN_MODULES = ("q_proj", "k_proj", "v_proj", "o_proj")
# config fields two models must share to decode in one loop (same cache and rotary layout)
JOINT_CONFIG_KEYS = (
    "model_type",
    "hidden_size",
    "num_hidden_layers",
    "num_attention_heads",
    "num_key_value_heads",
    "head_dim",
    "rope_theta",
    "rope_scaling",
    "rope_parameters",
    "max_position_embeddings",
)


def unsupported_reason(model: nn.Module) -> str | None:
    """Why the fast engine cannot run `model` (None if it can)."""
    cfg = model.config
    mtype = getattr(cfg, "model_type", None)
    if mtype not in SUPPORTED_MODEL_TYPES:
        return f"model_type {mtype!r} (supported: {', '.join(SUPPORTED_MODEL_TYPES)})"
    trunk = getattr(model, "base_model", None)
    for attr in ("embed_tokens", "layers", "norm", "rotary_emb"):
        if not hasattr(trunk, attr):
            return f"{type(model).__name__} has no trunk attribute {attr!r}"
    for layer in trunk.layers:
        missing = [m for m in LAYER_MODULES if not hasattr(layer, m)]
        missing += [m for m in ATTN_MODULES if not hasattr(layer.self_attn, m)]
        if missing:
            return f"decoder layer without {missing}"
    layer_types = getattr(cfg, "layer_types", None) or []
    if any(t != "full_attention" for t in layer_types):
        return f"non-full attention layers {sorted(set(layer_types))}"
    if getattr(cfg, "use_sliding_window", False) and getattr(cfg, "sliding_window", None):
        return "sliding-window attention"
    if not isinstance(model.get_output_embeddings(), nn.Linear):
        return "LM head is not an nn.Linear"
    return None


def joint_mismatch(
    engine: FastEngine, other: FastEngine, params: SamplingParams, first: SamplingParams
) -> str | None:
    """Why `other` (sampling with `params`) cannot share `engine`'s decode loop, whose first
    group samples with `first`; None when it can (same device, dtype, shape and sampling)."""
    if other.device != engine.device:
        return f"device {other.device} != {engine.device}"
    if other.trunk.embed_tokens.weight.dtype != engine.trunk.embed_tokens.weight.dtype:
        return "different weight dtypes"
    for key in JOINT_CONFIG_KEYS:
        a, b = getattr(engine.model.config, key, None), getattr(other.model.config, key, None)
        if a != b:
            return f"config.{key} differs ({a!r} vs {b!r})"
    for field in ("max_new_tokens", "temperature", "top_p", "top_k"):
        if getattr(params, field) != getattr(first, field):
            return f"params.{field} differs"
    want = engine.stop_ids(first)
    if engine.stop_ids(params) != want or other.stop_ids(params) != want:
        return "stop token ids differ"
    return None


def prefill_rows(counts: list[int], num_prompts: int) -> torch.Tensor:
    """(R,) index into the group-stacked prompt rows (G * P) of every rollout row: prompt p
    of group g -> n_g consecutive rows."""
    idx = [
        g * num_prompts + p
        for g, n in enumerate(counts)
        for p in range(num_prompts)
        for _ in range(n)
    ]
    return torch.tensor(idx)
