"""Tiny randomly initialised causal LMs (Llama / Qwen2 / Qwen3) built in code, no download.

Used by tests, CI and the lab world together with `models.tokenizer.build_char_tokenizer`.
Initialisation is deterministic for a seed: the global RNG is forked (so the caller's
RNG state is untouched), seeded, and the model built inside; the same seed gives
bit-identical weights. Word embeddings are NOT tied (`tie_word_embeddings=False`) so an
in-place update of `lm_head` never silently changes the input embedding.
"""

from __future__ import annotations

import torch
from transformers import (
    LlamaConfig,
    LlamaForCausalLM,
    PretrainedConfig,
    PreTrainedModel,
    PreTrainedTokenizerBase,
    Qwen2Config,
    Qwen2ForCausalLM,
    Qwen3Config,
    Qwen3ForCausalLM,
)

from mgrpo.checks import check_int

# arch name -> (config class, model class)
TINY_ARCHS: dict[str, tuple[type[PretrainedConfig], type[PreTrainedModel]]] = {
    "llama": (LlamaConfig, LlamaForCausalLM),
    "qwen2": (Qwen2Config, Qwen2ForCausalLM),
    "qwen3": (Qwen3Config, Qwen3ForCausalLM),
}
INIT_STD = 0.02  # HF default initializer_range
ROPE_THETA = 10000.0


def tiny_config(
    tokenizer: PreTrainedTokenizerBase,
    *,
    arch: str = "llama",
    hidden_size: int = 64,
    num_layers: int = 2,
    num_heads: int = 4,
    num_kv_heads: int = 2,
    intermediate_size: int = 128,
    max_position_embeddings: int = 1024,
) -> PretrainedConfig:
    """The config `build_tiny_model` uses (vocab size = len(tokenizer), special ids from it)."""
    if arch not in TINY_ARCHS:
        raise ValueError(f"arch must be one of {sorted(TINY_ARCHS)}, got {arch!r}")
    for name, value in (
        ("hidden_size", hidden_size),
        ("num_layers", num_layers),
        ("num_heads", num_heads),
        ("num_kv_heads", num_kv_heads),
        ("intermediate_size", intermediate_size),
        ("max_position_embeddings", max_position_embeddings),
    ):
        check_int(value, name, low=1, rule="a positive int")
    if hidden_size % num_heads:
        raise ValueError(
            f"hidden_size ({hidden_size}) must be divisible by num_heads ({num_heads})"
        )
    if num_heads % num_kv_heads:
        raise ValueError(
            f"num_heads ({num_heads}) must be divisible by num_kv_heads ({num_kv_heads})"
        )
    head_dim = hidden_size // num_heads
    if head_dim % 2:
        raise ValueError(
            f"head_dim = hidden_size / num_heads must be even for rotary, got {head_dim}"
        )
    config_cls, _ = TINY_ARCHS[arch]
    kwargs = dict(
        vocab_size=len(tokenizer),
        hidden_size=hidden_size,
        num_hidden_layers=num_layers,
        num_attention_heads=num_heads,
        num_key_value_heads=num_kv_heads,
        intermediate_size=intermediate_size,
        max_position_embeddings=max_position_embeddings,
        head_dim=head_dim,
        initializer_range=INIT_STD,
        tie_word_embeddings=False,
        pad_token_id=tokenizer.pad_token_id,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        rope_theta=ROPE_THETA,
    )
    if arch != "llama":
        kwargs["use_sliding_window"] = False
    config = config_cls(**kwargs)
    config.tie_word_embeddings = False
    return config


def cast_parameters(model: torch.nn.Module, dtype: torch.dtype) -> None:
    """Cast the parameters to `dtype` in place, leaving the buffers as they are: a model
    built in code then matches `from_pretrained(dtype=...)`, which keeps RoPE's `inv_freq`
    (and any other positional table) in fp32. `model.to(dtype)` would cast those too."""
    for param in model.parameters():
        param.data = param.data.to(dtype)


def build_tiny_model(
    tokenizer: PreTrainedTokenizerBase,
    *,
    arch: str = "llama",
    hidden_size: int = 64,
    num_layers: int = 2,
    num_heads: int = 4,
    num_kv_heads: int = 2,
    intermediate_size: int = 128,
    max_position_embeddings: int = 1024,
    seed: int = 0,
    dtype: torch.dtype = torch.float32,
) -> PreTrainedModel:
    """A randomly initialised `arch` causal LM sized for tests; deterministic for `seed`.

    Returned in eval mode on CPU with `dtype` weights. The caller's global RNG state is
    preserved (initialisation runs inside `torch.random.fork_rng`).
    """
    config = tiny_config(
        tokenizer,
        arch=arch,
        hidden_size=hidden_size,
        num_layers=num_layers,
        num_heads=num_heads,
        num_kv_heads=num_kv_heads,
        intermediate_size=intermediate_size,
        max_position_embeddings=max_position_embeddings,
    )
    _, model_cls = TINY_ARCHS[arch]
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = model_cls(config)
    cast_parameters(model, dtype)
    model.generation_config.pad_token_id = tokenizer.pad_token_id
    model.generation_config.eos_token_id = tokenizer.eos_token_id
    model.generation_config.bos_token_id = tokenizer.bos_token_id
    model.eval()
    return model
