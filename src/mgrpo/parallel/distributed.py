"""Data-parallel / FSDP2 training under `torchrun`: process group, prompt split, reductions.

How a step is split. The B prompts of a step (``trainer.prompts_per_step``, a
GLOBAL count) are cut into ``world_size`` contiguous slices; rank r owns prompts
``[r B/W, (r+1) B/W)`` with every rollout of those prompts (policy and momentum), so the
entropy filter, the vote and the advantages stay local. What crosses ranks:

- the loss normalisers (loss tokens / sequences of the update), summed, so each rank's loss
  is its partial sum over the GLOBAL normaliser and the summed gradients equal the 1-rank
  gradient (`GlobalCounts`);
- the gradients: reduce-scattered by FSDP2 (which averages, so the loss is scaled by W), or
  all-reduced (summed) when ``distributed.fsdp`` is false (replicated weights, DDP-style);
- the per-rollout statistics behind the metrics (a few numbers per rollout), gathered so the
  1-rank formulas run on the whole batch (`gather_objects`); timings reduce with max.

FSDP2 (``torch.distributed.fsdp.fully_shard``): each decoder layer is one FSDP unit, the root
(embeddings, final norm, LM head) another; mixed precision bf16 params / fp32 reduce on CUDA
(fp32 everywhere on CPU). Training forwards go through a registered FSDP forward method
(``mgrpo_score``) because scoring calls the trunk and the LM head weight directly. Works on
CPU with gloo (torch 2.13, tested) and on CUDA with nccl.

Rollouts need full weights: every rank keeps an UNSHARDED generator copy of the policy (and
of the momentum model), refreshed after each optimizer step / EMA by all-gathering one
parameter at a time (`refresh_full_copy_`). Cost per GPU: 2 bytes/param for each bf16
generator copy (docs/memory.md: the memory per stage).

A dead or hung rank: every collective has ``distributed.timeout_s``; the survivors raise
`RankLostError` (a clear message naming the rank and the stage) instead of hanging, and
torchrun tears the job down. `--resume` continues from the last complete checkpoint.
"""

from __future__ import annotations

import copy
import datetime
import os
import socket
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist
from torch import nn

from mgrpo.rollout import score_responses

SCORE_METHOD = "mgrpo_score"  # FSDP-registered forward method used for training forwards


class RankLostError(RuntimeError):
    """A collective failed or timed out: another rank died or hangs."""


@dataclass(frozen=True)
class DistContext:
    """Where this process sits. `world_size == 1` without FSDP means plain one-process training."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    backend: str | None = None  # None = no process group
    fsdp: bool = False
    timeout_s: float = 600.0

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def active(self) -> bool:
        """A process group exists (W > 1, or FSDP on one process)."""
        return self.backend is not None

    @property
    def grad_scale(self) -> float:
        """Factor on each rank's loss: FSDP averages gradients over ranks, we want their sum."""
        return float(self.world_size) if self.fsdp else 1.0


SINGLE = DistContext()


def _env_int(key: str) -> int | None:
    raw = os.environ.get(key)
    if raw is None or raw == "":
        return None
    try:
        return int(raw)
    except ValueError:
        raise ValueError(f"environment variable {key}={raw!r} is not an integer (set by torchrun)") from None


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def init_distributed(
    *, backend: str = "auto", timeout_s: float = 600.0, fsdp: bool | None = None, device: str = "auto"
) -> DistContext:
    """Join the torchrun process group (env RANK / WORLD_SIZE / LOCAL_RANK) or stay single.

    backend auto = nccl when CUDA is used, else gloo. `fsdp` None = on iff WORLD_SIZE > 1;
    `fsdp=True` on one process (no torchrun) creates a one-rank group on a free local port.
    On CUDA the process is pinned to cuda:LOCAL_RANK.
    """
    world = _env_int("WORLD_SIZE") or 1
    rank = _env_int("RANK") or 0
    local = _env_int("LOCAL_RANK") or 0
    if world < 1 or not 0 <= rank < world:
        raise ValueError(f"bad torchrun environment: RANK={rank} WORLD_SIZE={world}")
    use_fsdp = world > 1 if fsdp is None else bool(fsdp)
    if world == 1 and not use_fsdp:
        return SINGLE
    on_cuda = torch.cuda.is_available() and device != "cpu"
    if backend == "auto":
        backend = "nccl" if on_cuda else "gloo"
    if backend == "nccl" and not on_cuda:
        raise ValueError("distributed.backend=nccl needs CUDA; use gloo (or auto) on CPU")
    if on_cuda:
        torch.cuda.set_device(local)
    timeout = datetime.timedelta(seconds=timeout_s)
    if not dist.is_initialized():
        if "MASTER_ADDR" in os.environ:
            dist.init_process_group(backend, timeout=timeout)
        else:  # one process, FSDP requested, no torchrun
            dist.init_process_group(
                backend, init_method=f"tcp://127.0.0.1:{_free_port()}", rank=0, world_size=1,
                timeout=timeout,
            )
    return DistContext(rank, world, local, backend, use_fsdp, timeout_s)


def shutdown(ctx: DistContext) -> None:
    """Destroy the process group (no-op when single)."""
    if ctx.active and dist.is_initialized():
        dist.destroy_process_group()


def rank_print(ctx: DistContext, message: str, *, all_ranks: bool = False) -> None:
    """Print to stderr on rank 0 only (or on every rank, prefixed with it)."""
    if all_ranks and ctx.world_size > 1:
        print(f"[rank {ctx.rank}] {message}", file=sys.stderr, flush=True)
    elif ctx.is_main:
        print(message, file=sys.stderr, flush=True)


@contextmanager
def collective(ctx: DistContext, stage: str) -> Iterator[None]:
    """Turn a failed/timed-out collective into `RankLostError` naming this rank and stage."""
    try:
        yield
    except RankLostError:
        raise
    except (RuntimeError, dist.DistError) as exc:
        if not ctx.active:
            raise
        raise RankLostError(
            f"rank {ctx.rank}/{ctx.world_size}: a collective failed during {stage} "
            f"(another rank died, or hung past distributed.timeout_s={ctx.timeout_s:g}s): "
            f"{str(exc).splitlines()[0] if str(exc) else type(exc).__name__}. "
            f"Restart with --resume to continue from the last complete checkpoint."
        ) from exc


# ----------------------------------------------------------------------- prompt split


def local_slice(ctx: DistContext, global_count: int, *, what: str = "trainer.prompts_per_step") -> range:
    """Global indices [r B/W, (r+1) B/W) owned by this rank; B must divide by W."""
    if global_count % ctx.world_size:
        raise ValueError(
            f"{what}={global_count} is not divisible by the world size {ctx.world_size}: "
            f"each rank must own whole prompt groups (choose a multiple of {ctx.world_size})"
        )
    per = global_count // ctx.world_size
    return range(ctx.rank * per, (ctx.rank + 1) * per)


# ------------------------------------------------------------------------- reductions


def _device(ctx: DistContext) -> torch.device:
    return torch.device("cuda", torch.cuda.current_device()) if ctx.backend == "nccl" else torch.device("cpu")


def all_reduce(ctx: DistContext, values: list[float], op: str = "sum", *, stage: str = "metrics") -> list[float]:
    """Sum (or max / min) a list of python numbers over ranks, in fp64."""
    if not ctx.active or ctx.world_size == 1 or not values:
        return [float(v) for v in values]
    ops = {"sum": dist.ReduceOp.SUM, "max": dist.ReduceOp.MAX, "min": dist.ReduceOp.MIN}
    buf = torch.tensor(values, dtype=torch.float64, device=_device(ctx))
    with collective(ctx, stage):
        dist.all_reduce(buf, op=ops[op])
    return buf.cpu().tolist()


def gather_objects(ctx: DistContext, obj: Any, *, stage: str = "metrics") -> list[Any]:
    """Every rank's `obj` (small, picklable), in rank order, on every rank."""
    if not ctx.active or ctx.world_size == 1:
        return [obj]
    out: list[Any] = [None] * ctx.world_size
    with collective(ctx, stage):
        dist.all_gather_object(out, obj)
    return out


def broadcast_object(ctx: DistContext, obj: Any, *, stage: str = "checkpoint") -> Any:
    """Rank 0's `obj` on every rank."""
    if not ctx.active or ctx.world_size == 1:
        return obj
    box = [obj]
    with collective(ctx, stage):
        dist.broadcast_object_list(box, src=0)
    return box[0]


def barrier(ctx: DistContext, stage: str) -> None:
    if ctx.active and ctx.world_size > 1:
        with collective(ctx, stage):
            if ctx.backend == "nccl":
                dist.barrier(device_ids=[torch.cuda.current_device()])
            else:
                dist.barrier()


@torch.no_grad()
def all_reduce_grads_(ctx: DistContext, params: list[nn.Parameter]) -> None:
    """Replicated (non-FSDP) data parallel: sum every gradient over ranks, in place,
    one flat buffer per dtype (the loss is already normalised by the global counts)."""
    if not ctx.active or ctx.world_size == 1 or ctx.fsdp:
        return
    groups: dict[torch.dtype, list[torch.Tensor]] = {}
    for p in params:
        if p.grad is None:
            p.grad = torch.zeros_like(p)
        groups.setdefault(p.grad.dtype, []).append(p.grad)
    for grads in groups.values():
        flat = torch.cat([g.reshape(-1) for g in grads])
        with collective(ctx, "gradient all-reduce"):
            dist.all_reduce(flat)
        pieces = flat.split([g.numel() for g in grads])
        torch._foreach_copy_(grads, [x.view_as(g) for x, g in zip(pieces, grads)])


# ------------------------------------------------------------------------------ FSDP2


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


def shard_model(
    model: nn.Module, ctx: DistContext, *, param_dtype: torch.dtype | None, trainable: bool
) -> nn.Module:
    """`fully_shard` every decoder layer, then the root, in place; return the model.

    Mixed precision on CUDA: compute in `param_dtype` (bf16), reduce gradients in fp32;
    the sharded parameters keep the dtype they were loaded in (fp32 master for the policy).
    A `mgrpo_score` method (score_responses through FSDP's hooks) is registered so the
    scorer's direct use of the trunk and of the LM head weight sees unsharded parameters.
    """
    fully_shard, MixedPrecisionPolicy, register = _fsdp_api()
    kwargs: dict[str, Any] = {}
    if param_dtype is not None and param_dtype != torch.float32:
        kwargs["mp_policy"] = MixedPrecisionPolicy(
            param_dtype=param_dtype, reduce_dtype=torch.float32 if trainable else None
        )
    for layer in _decoder_layers(model):
        fully_shard(layer, **kwargs)
    fully_shard(model, **kwargs)

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
    (peak extra memory: one full parameter). `sources`: (name in dst, sharded or full tensor)."""
    params = dict(dst.named_parameters())
    with collective(ctx, stage):
        for name, src in sources:
            params[name].copy_(full_tensor(src.detach()))



# ------------------------------------------------------------------ model wiring (FSDP)


@dataclass
class ShardedModels:
    """What `shard_run_models` returns (all on this rank)."""

    policy: nn.Module  # sharded (DTensor params, fp32 master)
    policy_full: nn.Module  # unsharded generator copy in the generation dtype
    reference: nn.Module | None  # sharded, generation dtype, frozen
    momentum_generator: nn.Module | None  # unsharded; `mgrpo.train.momentum.ShardedMomentum` wraps it


def inference_twin(model: nn.Module, *, device: torch.device, dtype: torch.dtype) -> nn.Module:
    """An inference-only copy of `model` on `device` in `dtype`, built one tensor at a time.

    The module tree is deep-copied with every parameter replaced by a meta tensor (no data),
    then each parameter is materialised straight on `device` from the source (cast during the
    copy), so the extra memory is the twin itself plus one parameter in flight: no full copy
    of the source ever exists on the target device or in host memory. Tied parameters stay
    tied; floating buffers are cast to `dtype` like `nn.Module.to(dtype)` would.
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
                if buf is not None:
                    module._buffers[name] = buf.to(
                        device=device, dtype=dtype if buf.is_floating_point() else None
                    )
    twin.eval()
    return twin


def shard_run_models(
    ctx: DistContext,
    policy: nn.Module,
    *,
    gen_dtype: torch.dtype,
    with_reference: bool,
    with_momentum: bool,
    device: torch.device | None = None,
) -> ShardedModels:
    """Build the unsharded generators and the reference from `policy`, then shard. The
    momentum master is `mgrpo.train.momentum.ShardedMomentum(policy, momentum_generator, ctx)`.

    `policy` is the full fp32 model as loaded, best on the CPU (`device` is where the run
    computes; None = where `policy` is). Start-up memory per rank on `device`: each generator
    twin is materialised there one parameter at a time (`inference_twin`); the reference is
    cast on the host and sharded layer by layer (FSDP2 moves one decoder layer's full tensors
    to `device`, then keeps this rank's shard); the policy likewise. No rank ever holds a
    full fp32 copy on `device`: the peak is the generators plus one full layer in flight.

    Memory per rank once built (P params, W ranks): policy master fp32 4P/W + AdamW 8P/W +
    grads 4P/W, reference 2P/W (bf16), momentum master 4P/W, generator copies 2P each (bf16,
    unsharded).
    """
    target = device if device is not None else next(policy.parameters()).device
    policy_full = inference_twin(policy, device=target, dtype=gen_dtype)
    momentum_generator = (
        inference_twin(policy, device=target, dtype=gen_dtype) if with_momentum else None
    )
    reference = None
    if with_reference:  # host-side cast copy, sharded (and moved) layer by layer
        reference = inference_twin(policy, device=next(policy.parameters()).device,
                                   dtype=gen_dtype)
        shard_model(reference, ctx, param_dtype=gen_dtype, trainable=False)
    shard_model(policy, ctx, param_dtype=gen_dtype, trainable=True)
    return ShardedModels(policy, policy_full, reference, momentum_generator)


def policy_refresher(ctx: DistContext, policy: nn.Module, policy_full: nn.Module):
    """`after_update` hook: all-gather the sharded policy into its generator copy."""
    sources = [(n, p) for n, p in policy.named_parameters()]

    def refresh() -> None:
        refresh_full_copy_(ctx, policy_full, sources, "policy generator refresh")

    return refresh


# ------------------------------------------------------------- sharded checkpoints (DCP)

SHARDED_DIR = "sharded"  # inside checkpoints/step-N/: torch.distributed.checkpoint files


def _dcp_state(policy: nn.Module, optimizer: torch.optim.Optimizer, momentum: Any) -> dict[str, Any]:
    # lazy, start-up: only multi-process runs need it
    from torch.distributed.checkpoint.state_dict import get_state_dict

    model_sd, optim_sd = get_state_dict(policy, optimizer)
    state: dict[str, Any] = {"model": model_sd, "optim": optim_sd}
    if momentum is not None:
        state["momentum"] = momentum.sharded_state()
    return state


def save_sharded(ctx: DistContext, directory: Path, policy: nn.Module,
                 optimizer: torch.optim.Optimizer, momentum: Any) -> None:
    """Collective: every rank writes its shards of policy / optimizer / momentum master
    under `directory/sharded` (torch.distributed.checkpoint; rank 0 writes the metadata).
    `directory` must be on a filesystem every rank sees (multi-node: shared storage)."""
    # lazy, start-up: only multi-process runs need it
    import torch.distributed.checkpoint as dcp

    with collective(ctx, "sharded checkpoint save"):
        dcp.save(_dcp_state(policy, optimizer, momentum), checkpoint_id=str(directory / SHARDED_DIR))


def load_sharded(ctx: DistContext, ckpt: Path, policy: nn.Module,
                 optimizer: torch.optim.Optimizer, momentum: Any) -> None:
    """Collective: load a sharded checkpoint, resharding to this world size if it differs."""
    # lazy, start-up: only multi-process runs need it
    import torch.distributed.checkpoint as dcp
    from torch.distributed.checkpoint.state_dict import set_state_dict

    source = ckpt / SHARDED_DIR
    if not source.is_dir():
        raise ValueError(
            f"{ckpt}: no {SHARDED_DIR}/ directory; it was written without FSDP "
            f"(resume it with distributed.fsdp=false)"
        )
    state = _dcp_state(policy, optimizer, momentum)
    with collective(ctx, "sharded checkpoint load"):
        dcp.load(state, checkpoint_id=str(source))
        set_state_dict(policy, optimizer, model_state_dict=state["model"],
                       optim_state_dict=state["optim"])
    if momentum is not None:  # loaded in place into the master DTensors
        momentum.refresh()
