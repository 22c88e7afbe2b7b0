"""Memory-aware batching for the `fast` engine: how many prompts one decode loop may take.

One loop over P prompts with r = sum(n_g) rollouts per prompt holds, per rollout row,

    kv_row   = 2 * layers * kv_heads * head_dim * L * itemsize        (K and V, L = Lp + new)
    logits   = SAMPLER_COPIES * V * 4                                 (fp32 logits + sampler)

and, per prompt and model, the prefill transients (Lp prompt positions)

    prefill  = Lp * Lp * itemsize + Lp * (2 * hidden + intermediate) * itemsize * PREFILL_COPIES

so a chunk of p prompts costs ``p * (r * (kv_row + logits) + G * prefill)`` bytes. The budget
is ``generation.kv_cache_gb`` GiB when given; otherwise, on CUDA, ``FREE_FRACTION`` of the
memory available at call time (`cuda_available_bytes`: the driver's free memory plus what
PyTorch's caching allocator has reserved but not allocated, tens of GB after a backward),
and on CPU no limit (one loop, as without a budget).

Splitting: chunk 0 samples with the call's seed and chunk c > 0 with `mgrpo.seeds.chunk_seed(seed, c)`,
so when everything fits in one chunk the samples are exactly the unsplit ones. A split changes
the samples: the sampler draws one uniform per live row per step from ONE generator, so a
row's draws depend on which rows share its loop. Split results equal the concatenation of
separate calls on the prompt chunks with those seeds (tested); greedy decoding gives the
same tokens up to the fp rounding of different padding widths.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

GIB = 1 << 30
FREE_FRACTION = 0.8  # share of free CUDA memory one decode loop may plan for, without a budget
SAMPLER_COPIES = 6  # (B, V) fp32 tensors alive in a decode step: logits, log-softmax, p, ...
PREFILL_COPIES = 4  # (Lp, hidden-or-intermediate) activations alive per layer in prefill


@dataclass(frozen=True)
class KVShape:
    """What one cached token and one row's sampler cost: read from a HF model config."""

    layers: int
    kv_heads: int
    head_dim: int
    hidden: int
    intermediate: int
    vocab: int
    itemsize: int  # bytes per cache / activation element (2 for bf16)

    @property
    def kv_bytes_per_token(self) -> int:
        """Bytes of K and V one position of one row holds over all layers."""
        return 2 * self.layers * self.kv_heads * self.head_dim * self.itemsize

    def row_bytes(self, length: int) -> int:
        """KV cache of one rollout row over `length` positions plus its sampler tensors."""
        return self.kv_bytes_per_token * length + SAMPLER_COPIES * self.vocab * 4

    def prefill_bytes(self, prompt_len: int) -> int:
        """Transient bytes of one prompt's prefill through one model (mask + activations)."""
        act = prompt_len * (2 * self.hidden + self.intermediate) * PREFILL_COPIES
        return (prompt_len * prompt_len + act) * self.itemsize

    def prompt_bytes(self, rows_per_prompt: int, models: int, prompt_len: int, new: int) -> int:
        """One prompt's share of a decode loop: its rows' caches and sampler, its prefills."""
        return rows_per_prompt * self.row_bytes(prompt_len + new) + models * self.prefill_bytes(
            prompt_len
        )


def kv_shape(config, dtype: torch.dtype) -> KVShape:
    """`KVShape` of a HF Llama/Qwen config with caches in `dtype`."""
    heads = config.num_attention_heads
    return KVShape(
        layers=config.num_hidden_layers,
        kv_heads=getattr(config, "num_key_value_heads", None) or heads,
        head_dim=getattr(config, "head_dim", None) or config.hidden_size // heads,
        hidden=config.hidden_size,
        intermediate=getattr(config, "intermediate_size", None) or 4 * config.hidden_size,
        vocab=config.vocab_size,
        itemsize=torch.empty((), dtype=dtype).element_size(),
    )


def budget_bytes(kv_cache_gb: float | None, device: torch.device, held: int = 0) -> int | None:
    """The byte budget of one decode loop: `kv_cache_gb` GiB; else FREE_FRACTION of the free
    CUDA memory plus `held` (bytes the engine already holds for decoding and would reuse);
    else (CPU) None = no limit."""
    if kv_cache_gb is not None:
        if not kv_cache_gb > 0:
            raise ValueError(f"generation.kv_cache_gb must be > 0 (or null), got {kv_cache_gb!r}")
        return int(kv_cache_gb * GIB)
    if device.type == "cuda":
        return int(FREE_FRACTION * (cuda_available_bytes(device) + held))
    return None


def cuda_available_bytes(device: torch.device) -> int:
    """Bytes new tensors on `device` can take: `torch.cuda.mem_get_info`'s free bytes (not
    reserved by any process) plus the caching allocator's reserved-but-unallocated bytes
    (`memory_reserved - memory_allocated`), which `mem_get_info` counts as used although
    this process reuses them first. The reserved part may be fragmented across segments;
    FREE_FRACTION leaves the margin for that."""
    free, _ = torch.cuda.mem_get_info(device)
    cached = torch.cuda.memory_reserved(device) - torch.cuda.memory_allocated(device)
    return int(free) + max(0, int(cached))


def prompts_per_chunk(per_prompt_bytes: int, budget: int | None, num_prompts: int) -> int:
    """Prompts one loop may take: floor(budget / per_prompt), at least 1 (a single prompt
    over budget still runs, alone), at most `num_prompts`; all of them when no budget."""
    if budget is None:
        return num_prompts
    return max(1, min(num_prompts, budget // max(per_prompt_bytes, 1)))


def plan_prompts(config, dtype: torch.dtype, device: torch.device, kv_cache_gb: float | None,
                 prompts: list[list[int]], counts: list[int], new: int, held: int = 0) -> int:
    """Prompts per decode loop for `counts` rows per prompt and model (one entry per model),
    `new` tokens, sized by the longest prompt: all of them when they fit the budget
    (`budget_bytes`; `held`: bytes of a kept KV workspace)."""
    longest = max(len(p) for p in prompts)
    per_prompt = kv_shape(config, dtype).prompt_bytes(sum(counts), len(counts), longest, new)
    budget = budget_bytes(kv_cache_gb, device, held)
    return prompts_per_chunk(per_prompt, budget, len(prompts))
