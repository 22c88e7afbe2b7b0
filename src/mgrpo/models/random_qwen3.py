"""Randomly initialised Qwen3 models of real shapes, built in code (no hub access).

`qwen3-0.6b-random` has the shapes of Qwen3-0.6B (28 layers, hidden 1024, 16 query / 8 KV
heads of dim 128, MLP 3072, vocabulary 151936, tied embeddings): the memory and compute of
the real model, for end-to-end GPU checks of the training path. `qwen3-random-smoke` is the
same architecture at a CPU-sized shape (2 layers, hidden 64, vocabulary 512) for tests.
Both pair with the character tokenizer (`models.tokenizer`): sampled ids above its
vocabulary decode to nothing, which only lowers the parsed-answer rate. Weights are a
deterministic function of the seed and the device (initialisation runs on the target
device inside a forked RNG, so the caller's RNG state is untouched).
"""

from __future__ import annotations

from typing import Any

import torch

from mgrpo.models.tiny import cast_parameters

QWEN3_SHAPES: dict[str, dict[str, Any]] = {
    "qwen3-0.6b-random": dict(
        vocab_size=151936, hidden_size=1024, intermediate_size=3072, num_hidden_layers=28,
        num_attention_heads=16, num_key_value_heads=8, head_dim=128,
        max_position_embeddings=40960, rope_theta=1_000_000.0, rms_norm_eps=1e-6,
        tie_word_embeddings=True,
    ),
    "qwen3-random-smoke": dict(
        vocab_size=512, hidden_size=64, intermediate_size=192, num_hidden_layers=2,
        num_attention_heads=4, num_key_value_heads=2, head_dim=16,
        max_position_embeddings=4096, rope_theta=1_000_000.0, rms_norm_eps=1e-6,
        tie_word_embeddings=True,
    ),
}


def build_random_qwen3(
    name: str, tokenizer: Any, *, seed: int, dtype: torch.dtype, device: torch.device
) -> torch.nn.Module:
    """The random Qwen3 model `name` (a key of QWEN3_SHAPES) on `device` in `dtype`, eval mode."""
    # lazy, start-up: transformers takes seconds to import
    from transformers import Qwen3Config, Qwen3ForCausalLM

    shape = dict(QWEN3_SHAPES[name])
    if shape["vocab_size"] < len(tokenizer):
        raise ValueError(f"{name}: vocabulary {shape['vocab_size']} < tokenizer size {len(tokenizer)}")
    config = Qwen3Config(
        **shape, use_sliding_window=False, bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id,
    )
    with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []):
        torch.manual_seed(seed)
        with torch.device(device):
            model = Qwen3ForCausalLM(config)
    cast_parameters(model, dtype)
    model.generation_config.pad_token_id = tokenizer.pad_token_id
    model.generation_config.eos_token_id = tokenizer.eos_token_id
    model.generation_config.bos_token_id = tokenizer.bos_token_id
    model.eval()
    return model
