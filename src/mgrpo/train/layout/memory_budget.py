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

Held through the backward on top of it (`backward_bytes`, also in the pre-flight):

    KV workspace   a graphed `fast` engine keeps its KV workspace between training steps
                   (`generation.keep_workspace`, default on with CUDA graphs): K and V of
                   its rows x (prompt + new) positions, rounded up to 256 positions, plus the
                   graphs' fp32 logits buffer (rows x V x 4). The pre-flight counts the
                   smallest workspace a training rollout can keep, one prompt's rows (the
                   memory budget never splits a prompt); W ranks of one prompt each keep
                   exactly that.
    LM-head grads  the chunked LM head's backward (`rollout.scoring.ChunkedTokenLogProb`):
                   an fp32 (V, H) accumulator, one (V, H) product in the product dtype and the
                   (V, H) result in the weight dtype (none when it is fp32): (4 + p + w) V H
                   with p, w their bytes (0 for LoRA, whose head is frozen).

Not counted (they come on top): activations, the rollout's sampler and prefill, the CUDA
context, allocator fragmentation (docs/memory.md: the transient peaks per stage).
"""

from __future__ import annotations

import torch

from mgrpo.rollout.cuda_graph import WORKSPACE_LENGTH_ROUND

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


def kv_workspace_bytes(*, rows: int, length: int, layers: int, kv_heads: int, head_dim: int,
                       vocab: int, itemsize: int) -> int:
    """Bytes of the KV workspace a graphed fast engine keeps for a loop of `rows` rows x
    `length` positions: 2 layers kv_heads head_dim itemsize per position, length rounded up
    to WORKSPACE_LENGTH_ROUND, plus the graphs' shared fp32 logits buffer (rows x V x 4)."""
    rounded = -(-length // WORKSPACE_LENGTH_ROUND) * WORKSPACE_LENGTH_ROUND
    return rows * (2 * layers * kv_heads * head_dim * itemsize * rounded + 4 * vocab)


def lm_head_grad_bytes(*, vocab: int, hidden: int, weight: int, product: int) -> int:
    """Peak bytes of the LM-head weight gradient's temporaries in the chunked backward: the
    fp32 (V, H) accumulator, one (V, H) chunk product of `product` bytes per element and the
    result cast to the weight dtype (`weight` bytes; no copy when it is fp32)."""
    return vocab * hidden * (4 + product + (weight if weight != 4 else 0))


def backward_bytes(kind: str, *, rows: int, length: int, layers: int, kv_heads: int,
                   head_dim: int, vocab: int, hidden: int, compute: int, master: int,
                   keep_workspace: bool) -> dict[str, int]:
    """What layout `kind` holds through the backward beyond its static state (module
    docstring): the kept KV workspace of `rows` rows (when `keep_workspace`) and the LM-head
    gradient temporaries. Weights and products by layout: full = the master dtype; mixed =
    an fp32 master under bf16 autocast; sharded = compute-dtype weights, no autocast; lora =
    a frozen head (no weight gradient)."""
    terms = {}
    if keep_workspace:
        terms["KV workspace kept between steps"] = kv_workspace_bytes(
            rows=rows, length=length, layers=layers, kv_heads=kv_heads, head_dim=head_dim,
            vocab=vocab, itemsize=compute)
    weight, product = {"full": (master, master), "mixed": (4, compute),
                       "sharded": (compute, compute)}.get(kind, (0, 0))
    if weight:
        terms["LM-head gradient temporaries"] = lm_head_grad_bytes(
            vocab=vocab, hidden=hidden, weight=weight, product=product)
    return terms


def device_capacity(device: torch.device) -> int | None:
    """Total memory of `device` in bytes; None where it is not known (CPU, MPS)."""
    if device.type == "cuda":
        return int(torch.cuda.get_device_properties(device).total_memory)
    return None


def preflight(kind: str, device: torch.device, *, params: int, trainable: int, world: int,
              compute: int, master: int, momentum: bool, reference: bool,
              backward: dict[str, int] | None = None) -> str | None:
    """None when the static state of layout `kind` plus what it holds through the backward
    (`backward`: `backward_bytes` terms) fits on `device` (or its size is not known), else
    the refusal: the estimate, its terms, and what to change, each with its own estimate."""
    capacity = device_capacity(device)
    if capacity is None:
        return None
    shape = {"params": params, "world": world, "compute": compute, "momentum": momentum,
             "reference": reference}
    terms = static_bytes(kind, trainable=trainable, master=master, **shape)
    static_total = sum(terms.values())
    held = dict(backward or {})
    total = static_total + sum(held.values())
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
    workspace = held.get("KV workspace kept between steps")
    if workspace:
        advice += (f"; or free the KV workspace before each backward "
                   f"(generation.keep_workspace=false): -{gib(workspace)}")
    detail = ", ".join(f"{k} {gib(v)}" for k, v in terms.items())
    more = ""
    if held:
        more = (f" and ~{gib(sum(held.values()))} more through the backward ("
                + ", ".join(f"{k} {gib(v)}" for k, v in held.items()) + f"), ~{gib(total)} in all,")
    return (f"memory pre-flight: the {kind} layout holds ~{gib(static_total)} of static state "
            f"per {device.type} device ({static_total / params:.1f} B/param x "
            f"{params / 1e9:.3f} B params: {detail}){more} more than the {gib(capacity)} of "
            f"{device}, before any activation. To fit, change the layout: {advice} (static "
            f"state only unless named; docs/memory.md)")
