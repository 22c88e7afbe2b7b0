"""FSDP2 (``torch.distributed.fsdp.fully_shard``) around the policy and the reference.

Each decoder layer is one FSDP unit, the root (embeddings, final norm, LM head) another;
mixed precision bf16 params / fp32 reduce on CUDA (fp32 everywhere on CPU). Training forwards
go through a registered FSDP forward method (`SCORE_METHOD`) because scoring calls the trunk
and the LM head weight directly.

Rollouts need full weights: every rank keeps an UNSHARDED generator copy of the policy (and
of the momentum model), refreshed after each optimizer step / EMA by all-gathering one
parameter at a time (`refresh_full_copy_`). Cost per GPU: 2 bytes/param for each bf16
generator copy (docs/memory.md: the memory per stage). The models of a sharded run are built
by `mgrpo.train.layout.layouts.ShardedLayout`.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from mgrpo.parallel.distributed import DistContext, collective
from mgrpo.rollout import score_responses

SCORE_METHOD = "mgrpo_score"  # FSDP-registered forward method used for training forwards


def _fsdp_api():
    """`fully_shard` & co.: public in torch >= 2.6 (`torch.distributed.fsdp`), private before."""
    try:
        # lazy, start-up: only multi-process runs need it
        from torch.distributed.fsdp import (
            MixedPrecisionPolicy,
            fully_shard,
            register_fsdp_forward_method,
        )
    except ImportError:  # torch < 2.6
        from torch.distributed._composable.fsdp import (  # type: ignore[no-redef]
            MixedPrecisionPolicy,
            fully_shard,
            register_fsdp_forward_method,
        )
    return fully_shard, MixedPrecisionPolicy, register_fsdp_forward_method


def _decoder_layers(model: nn.Module) -> list[nn.Module]:
    trunk = getattr(model, "base_model", model)
    layers = getattr(trunk, "layers", None)
    if layers is None:
        raise ValueError(f"{type(model).__name__}: FSDP sharding needs a trunk with `.layers`")
    return list(layers)


def device_mesh(ctx: DistContext, device: torch.device) -> Any:
    """The 1-D mesh of every rank on `device`'s type (the run's compute device). Without it
    `fully_shard` places the shards on the current accelerator, whatever `model.device`
    says (CUDA shards beside a CPU run, gloo refusing CUDA tensors); a CUDA `device` with an
    index also becomes the current device."""
    # lazy, start-up: only multi-process runs need it
    from torch.distributed.device_mesh import init_device_mesh

    if device.type == "cuda" and device.index is not None:
        torch.cuda.set_device(device)
    return init_device_mesh(device.type, (ctx.world_size,))


def shard_model(
    model: nn.Module, ctx: DistContext, *, param_dtype: torch.dtype | None, trainable: bool,
    mesh: Any,
) -> nn.Module:
    """`fully_shard` every decoder layer, then the root, in place, over `mesh`
    (`device_mesh`); return the model.

    Mixed precision on CUDA: compute in `param_dtype` (bf16), reduce gradients in fp32;
    the sharded parameters keep the dtype they were loaded in (fp32 master for the policy).
    A `mgrpo_score` method (score_responses through FSDP's hooks) is registered so the
    scorer's direct use of the trunk and of the LM head weight sees unsharded parameters.
    """
    fully_shard, MixedPrecisionPolicy, register = _fsdp_api()
    kwargs: dict[str, Any] = {"mesh": mesh}
    if param_dtype is not None and param_dtype != torch.float32:
        kwargs["mp_policy"] = MixedPrecisionPolicy(
            param_dtype=param_dtype, reduce_dtype=torch.float32 if trainable else None
        )
    for layer in _decoder_layers(model):
        fully_shard(layer, **kwargs)
    # FSDP2 keeps the root (embeddings, LM head, final norm) unsharded after its forward,
    # expecting a backward; a frozen model has none, so its root reshards like its layers
    root = kwargs if trainable else {**kwargs, "reshard_after_forward": True}
    fully_shard(model, **root)

    def mgrpo_score(self, *args, **kw):
        # one trunk forward per call: a second forward of the same FSDP layers before backward
        # (the shared-prompt-prefix path) is not something FSDP2's hooks are built for
        return score_responses(self, *args, share_prefix=False, **kw)

    model.mgrpo_score = mgrpo_score.__get__(model)  # bound method on this instance
    register(model, SCORE_METHOD)
    return model


def local_tensor(t: torch.Tensor) -> torch.Tensor:
    """The local shard of a DTensor (a view: in-place ops write the shard), else `t`."""
    return t.to_local() if hasattr(t, "to_local") else t


def full_tensor(t: torch.Tensor) -> torch.Tensor:
    """All-gather a DTensor (collective), else `t`."""
    return t.full_tensor() if hasattr(t, "full_tensor") else t


@torch.no_grad()
def refresh_full_copy_(
    ctx: DistContext, dst: nn.Module, sources: list[tuple[str, torch.Tensor]], stage: str
) -> None:
    """Copy full weights into the unsharded generator `dst`, gathering one tensor at a time
    (peak extra memory: one full parameter in `dst`'s dtype). `sources`: (name in dst,
    sharded or full tensor). Each local shard is cast to `dst`'s dtype before the all-gather
    (bf16: half the bytes of gathering the fp32 master; the cast is elementwise, so the
    result equals gathering first and casting after)."""
    params = dict(dst.named_parameters())
    with collective(ctx, stage):
        for name, src in sources:
            dst_param = params[name]
            dst_param.copy_(full_tensor(src.detach().to(dst_param.dtype)))


def policy_refresher(ctx: DistContext, policy: nn.Module, policy_full: nn.Module):
    """`after_update` hook: all-gather the sharded policy into its generator copy."""
    sources = [(n, p) for n, p in policy.named_parameters()]

    def refresh() -> None:
        refresh_full_copy_(ctx, policy_full, sources, "policy generator refresh")

    return refresh
