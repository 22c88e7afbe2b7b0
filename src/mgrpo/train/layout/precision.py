"""Precision of a training run: compute vs master dtypes and the copies mixed precision needs.

`model.dtype` is the compute dtype (auto: bf16 on CUDA, fp32 on CPU); `model.master_dtype`
the dtype of the trained weights, their gradients and the optimizer state. With bf16 compute
over an fp32 master on one process (full weights), the policy is the fp32 master and trains
under `torch.autocast(bf16)`; a bf16 copy (`inference_twin`, built one tensor at a time)
generates and scores, refreshed from the master after every optimizer step by
`copy_refresher` (it always equals the master cast to bf16). FSDP keeps its own fp32 master
(`layouts.shard_run_models`); LoRA trains adapters in the master dtype over a base in the
compute dtype. See docs/algorithm-notes.md.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass

import torch
from torch import nn

from mgrpo.config import Config
from mgrpo.models.loading import resolve_device, resolve_dtype


class PrecisionError(ValueError):
    """The dtype / device settings cannot train (the message names the key)."""


@dataclass(frozen=True)
class Precision:
    """Resolved dtypes of a run. `compute`: forwards (rollouts, scoring, training forward);
    `master`: the trained weights, their gradients and the optimizer state; `load_dtype`: what
    the policy is loaded in; `mixed`: one process, full weights, master != compute (the
    training forward runs under autocast, bf16 copies generate / score / refer)."""

    device: torch.device
    compute: torch.dtype
    master: torch.dtype
    load_dtype: str
    mixed: bool

    def describe(self) -> dict[str, str]:
        """What a checkpoint records, to compare at resume."""
        return {"device": self.device.type, "compute_dtype": str(self.compute).split(".")[-1],
                "master_dtype": str(self.master).split(".")[-1]}


def resolve_precision(cfg: Config, *, fsdp: bool) -> Precision:
    """model.dtype / model.master_dtype / model.device -> Precision, or PrecisionError.

    float16 is refused for training (no loss scaling: small gradients underflow). A bf16
    master needs bf16 compute and one process (FSDP always keeps an fp32 master)."""
    device = resolve_device(cfg.model.device)  # ValueError naming model.device
    compute = resolve_dtype(cfg.model.dtype, device)
    if compute == torch.float16:
        raise PrecisionError("model.dtype=float16 is not supported for training (no loss scaling: "
                             "small gradients underflow); use bfloat16 or float32")
    master = torch.float32 if cfg.model.master_dtype == "float32" else torch.bfloat16
    if master == torch.bfloat16 and compute != torch.bfloat16:
        raise PrecisionError(f"model.master_dtype=bfloat16 needs bf16 compute, but model.dtype="
                             f"{cfg.model.dtype} resolves to {str(compute).split('.')[-1]} on "
                             f"{device.type}; set model.dtype=bfloat16")
    if master == torch.bfloat16 and fsdp:
        raise PrecisionError("model.master_dtype=bfloat16 with FSDP: FSDP keeps an fp32 master; "
                             "use model.master_dtype=float32")
    lora = cfg.model.lora.r > 0
    mixed = not fsdp and not lora and master != compute
    load = str(master if fsdp or mixed else compute).split(".")[-1]
    return Precision(device, compute, master, load, mixed)


def copy_refresher(master: torch.nn.Module, copy_: torch.nn.Module):
    """`after_update` hook: copy the master's weights into the compute copy (cast on copy,
    round to nearest even), so the copy always equals the master cast to its dtype."""
    pairs = dict(copy_.named_parameters())
    src = [p for _, p in master.named_parameters()]
    dst = [pairs[n] for n, _ in master.named_parameters()]

    @torch.no_grad()
    def refresh() -> None:
        torch._foreach_copy_([d.data for d in dst], [s.detach() for s in src])

    return refresh


def inference_twin(model: nn.Module, *, device: torch.device, dtype: torch.dtype) -> nn.Module:
    """An inference-only copy of `model` on `device` in `dtype`, built one tensor at a time.

    The module tree is deep-copied with every parameter replaced by a meta tensor (no data),
    then each parameter is materialised straight on `device` from the source (cast during the
    copy), so the extra memory is the twin itself plus one parameter in flight: no full copy
    of the source ever exists on the target device or in host memory. Tied parameters stay
    tied. Departure from `nn.Module.to(dtype)`: buffers keep their own dtype (copied, not
    cast). The floating buffers of a causal LM are tables such as RoPE's fp32 `inv_freq`;
    cast to bf16 they would rotate every position by a different angle than the master's
    (0.12 rad at position 100, 1.15 at 1000 for theta = 1e6, head dim 128), as
    `from_pretrained(dtype=bf16)` also keeps them fp32.
    """
    params = list(model.parameters())
    memo = {id(p): nn.Parameter(torch.empty_like(p, device="meta"), requires_grad=False)
            for p in params}
    twin = copy.deepcopy(model, memo)
    made: dict[int, nn.Parameter] = {}  # meta param id -> materialised param (ties)
    sources = {id(memo[id(p)]): p for p in params}
    with torch.no_grad():
        for module in twin.modules():
            for name, meta in list(module._parameters.items()):
                if meta is None:
                    continue
                if id(meta) not in made:
                    src = sources[id(meta)].detach()
                    cast = dtype if src.is_floating_point() else src.dtype
                    # always new storage (`.to` would alias a source already in place)
                    value = torch.empty(src.shape, device=device, dtype=cast).copy_(src)
                    made[id(meta)] = nn.Parameter(value, requires_grad=False)
                module._parameters[name] = made[id(meta)]
            for name, buf in list(module._buffers.items()):
                if buf is not None:  # own storage, own dtype (RoPE tables stay fp32)
                    module._buffers[name] = torch.empty_like(buf, device=device).copy_(buf)
    twin.eval()
    return twin
