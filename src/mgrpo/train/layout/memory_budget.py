"""Static memory of a run's model layout, and the pre-flight check that refuses a run whose
static state cannot fit on its device before anything is generated.

Static state: the weights of every copy, the gradients, AdamW's two moments and the EMA
master; bytes per device for P parameters (Pt trainable), W ranks, c = compute-dtype bytes
(2 for bf16), m = master-dtype bytes:

    full     m P (policy) + m Pt (grads) + 2 m Pt (AdamW) + m P (momentum generator)
             [+ 4 Pt fp32 EMA master when m != 4] [+ c P reference]
    mixed    4 P master + 4 P grads + 8 P AdamW + c P policy copy + c P momentum generator
             + 4 P EMA master [+ c P reference]              = 26 B/param at bf16 with a reference
    lora     c P frozen base + Pt (m weights + m grads + 2 m AdamW + 4 EMA master)
    sharded  (4 master + 4 grads + 8 AdamW + 4 EMA master [+ c reference]) P / W
             + c P per unsharded generator (policy, momentum)

Not counted (they come on top): activations, the KV cache and sampler of a rollout, the
CUDA context, allocator fragmentation (docs/memory.md: the transient peaks per stage).
"""

from __future__ import annotations

import torch

GIB = 1 << 30


def static_bytes(kind: str, *, params: int, trainable: int, world: int = 1, compute: int = 2,
                 master: int = 4, momentum: bool = True, reference: bool = False
                 ) -> dict[str, int]:
    """Bytes per device of the static state of layout `kind` (full, mixed, lora, sharded),
    term by term (the formulas above). Raises ValueError for another kind."""
    p, t, w = params, trainable, world
    if kind == "full":
        terms = {"policy": master * p, "gradients": master * t, "AdamW": 2 * master * t,
                 "momentum generator": master * p if momentum else 0,
                 "EMA master fp32": 4 * t if momentum and master != 4 else 0,
                 "reference": compute * p if reference else 0}
    elif kind == "mixed":
        terms = {"fp32 master": 4 * p, "gradients": 4 * p, "AdamW": 8 * p,
                 "policy copy": compute * p, "momentum generator": compute * p if momentum else 0,
                 "EMA master fp32": 4 * p if momentum else 0,
                 "reference": compute * p if reference else 0}
    elif kind == "lora":
        terms = {"frozen base": compute * p, "adapters + grads + AdamW": 4 * master * t,
                 "EMA master fp32": 4 * t if momentum else 0}
    elif kind == "sharded":
        terms = {"policy master fp32 4P/W": 4 * p // w, "AdamW 8P/W": 8 * p // w,
                 "gradients fp32 4P/W": 4 * p // w,
                 "momentum master 4P/W": 4 * p // w if momentum else 0,
                 "reference bf16 2P/W": compute * p // w if reference else 0,
                 "generators bf16 2P each": compute * p * (2 if momentum else 1)}
    else:
        raise ValueError(f"static_bytes: unknown layout kind {kind!r} "
                         f"(full, mixed, lora, sharded)")
    return {k: v for k, v in terms.items() if v}


def device_capacity(device: torch.device) -> int | None:
    """Total memory of `device` in bytes; None where it is not known (CPU, MPS)."""
    if device.type == "cuda":
        return int(torch.cuda.get_device_properties(device).total_memory)
    return None


def preflight(kind: str, device: torch.device, *, params: int, trainable: int, world: int,
              compute: int, master: int, momentum: bool, reference: bool) -> str | None:
    """None when the static state of layout `kind` fits on `device` (or its size is not
    known), else the refusal: the estimate, its terms, and what to change, each with its
    own estimate."""
    capacity = device_capacity(device)
    if capacity is None:
        return None
    shape = {"params": params, "world": world, "compute": compute, "momentum": momentum,
             "reference": reference}
    terms = static_bytes(kind, trainable=trainable, master=master, **shape)
    total = sum(terms.values())
    if total <= capacity:
        return None
    gib = lambda n: f"{n / GIB:.1f} GiB"  # noqa: E731 - a formatter
    ranks = max(2 * world, 8)
    options = {
        "LoRA (model.lora.r > 0, adapters taken as 1% of P)": static_bytes(
            "lora", trainable=params // 100, master=4, **shape),
        f"FSDP over {ranks} GPUs (--nproc {ranks})": static_bytes(
            "sharded", trainable=params, **{**shape, "world": ranks}),
        "a bf16 master (model.master_dtype=bfloat16, one dtype)": static_bytes(
            "full", trainable=params, master=2, **shape),
    }
    if kind == "sharded":
        options = {k: v for k, v in options.items() if not k.startswith("LoRA")}  # not with FSDP
    advice = "; ".join(f"{name}: ~{gib(sum(t.values()))}" for name, t in options.items())
    detail = ", ".join(f"{k} {gib(v)}" for k, v in terms.items())
    return (f"memory pre-flight: the {kind} layout holds ~{gib(total)} of static state per "
            f"{device.type} device ({total / params:.1f} B/param x {params / 1e9:.3f} B params: "
            f"{detail}), more than the {gib(capacity)} of {device}, before any activation or "
            f"KV cache. To fit, change the layout: {advice} (static state only; "
            f"docs/memory.md)")
