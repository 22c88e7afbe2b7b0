"""Weights out of a live torch model, for an engine that keeps its own copy (vLLM).

    full_weights(model)   -> [(HF name, full tensor)]: every weight the engine must load
    WeightVersion         a counter of changes to one set of weights (policy or momentum)

An engine that samples from a copy of the weights (`rollout.vllm_engine`) is fed from
`full_weights` after every change of the torch model, and refuses to sample while its copy is
behind (`WeightVersion`). What `full_weights` handles, so the copy equals the model:

- FSDP2: a DTensor parameter is gathered with `full_tensor()` (a collective: every rank of the
  mesh must call `full_weights` on its model, in the same order, as every rank does when each
  drives its own engine);
- LoRA (peft): every LoRA Linear is merged out of place, `W + (alpha / r) B A` computed in fp32
  and cast to W's dtype, under the plain HF name (`.base_layer` and the adapter tensors leave);
  the base weights are never modified. TRL merges in place, pushes and unmerges; the numbers
  pushed are the same, without the rounding drift that `W + d - d` leaves in the frozen base.
  A LoRA layer of another kind (Embedding, Conv) raises `LoraMergeError`;
- tied embeddings: a parameter shared by two modules is yielded once, under its first name
  (`model.embed_tokens.weight`); `lm_head.weight` is never yielded when
  `config.tie_word_embeddings` (the engine ties its head to its embedding itself);
- buffers (rotary `inv_freq`) are not weights: engines rebuild them from the config.
"""

from __future__ import annotations

from collections.abc import Iterator

import torch
from torch import nn

__all__ = ["LoraMergeError", "WeightVersion", "full_weights", "lora_merge_problem",
           "merged_lora_weight"]

TIED_HEAD = "lm_head.weight"


class LoraMergeError(ValueError):
    """A LoRA layer whose merged weight mgrpo cannot compute (only LoRA Linear merges)."""


class WeightVersion:
    """How many times one set of weights has changed: bumped by whoever changes them (the
    optimizer's step hook, the EMA update, a checkpoint restore), compared by the engines that
    hold a copy. `value` starts at 0 (the weights an engine was built from)."""

    def __init__(self) -> None:
        self.value = 0

    def bump(self) -> None:
        self.value += 1

    def __repr__(self) -> str:
        return f"WeightVersion({self.value})"


def _full(t: torch.Tensor) -> torch.Tensor:
    """The whole tensor of a DTensor (FSDP2 shard: all-gathered), else `t` itself."""
    t = t.detach()
    return t.full_tensor() if hasattr(t, "full_tensor") else t


def _merge_problem(name: str, module: nn.Module) -> str | None:
    base = getattr(module, "base_layer", None)
    if isinstance(base, nn.Linear) and isinstance(getattr(module, "lora_A", None), nn.ModuleDict):
        return None
    return (f"the LoRA layer {name or '<root>'} (over {type(base).__name__}) cannot be merged: "
            f"mgrpo merges LoRA Linear layers only (target q_proj, ..., down_proj)")


def lora_merge_problem(model: nn.Module) -> str | None:
    """Why `full_weights(model)` cannot merge the model's LoRA layers, or None."""
    for name, module in _lora_layers(model).items():
        problem = _merge_problem(name, module)
        if problem:
            return problem
    return None


def merged_lora_weight(module: nn.Module, name: str = "") -> torch.Tensor:
    """`W + sum_a scaling_a * B_a @ A_a` over the active adapters of a peft LoRA Linear,
    computed in fp32 and returned in W's dtype on W's device (W itself is not modified).

    Raises LoraMergeError for a LoRA layer that is not a Linear (Embedding, Conv)."""
    problem = _merge_problem(name, module)
    if problem:
        raise LoraMergeError(problem)
    base, lora_a = module.base_layer, module.lora_A
    weight = _full(base.weight)
    full = weight.float().clone()
    for adapter in module.active_adapters:
        if adapter not in lora_a:
            continue
        a = _full(lora_a[adapter].weight).float()  # (r, in)
        b = _full(module.lora_B[adapter].weight).float()  # (out, r)
        full += module.scaling[adapter] * (b @ a)
    return full.to(weight.dtype)


def _lora_layers(model: nn.Module) -> dict[str, nn.Module]:
    """name -> module of every peft LoRA layer in `model` (empty without peft adapters)."""
    return {name: m for name, m in model.named_modules()
            if hasattr(m, "base_layer") and hasattr(m, "lora_A")}


def full_weights(model: nn.Module) -> Iterator[tuple[str, torch.Tensor]]:
    """(HF name, full tensor) of every weight of `model`, one at a time, in parameter order
    (see the module docstring for FSDP2, LoRA and tied embeddings). Tensors are the live ones
    (no copy) except merged LoRA weights and gathered shards."""
    lora = _lora_layers(model)
    tied = bool(getattr(getattr(model, "config", None), "tie_word_embeddings", False))
    merged: set[str] = set()
    for name, param in model.named_parameters():
        owner = next((p for p in lora if name.startswith(p + ".")), None)
        if owner is not None:  # inside a LoRA layer: its merged weight (once), its base bias
            rest = name[len(owner) + 1:]
            if rest == "base_layer.weight" and owner not in merged:
                merged.add(owner)
                yield f"{owner}.weight", merged_lora_weight(lora[owner], owner)
            elif rest == "base_layer.bias":
                yield f"{owner}.bias", _full(param)
            continue
        if tied and name == TIED_HEAD:
            continue
        yield name, _full(param)
