"""Collectives for data-parallel / FSDP2 training under `torchrun`: the process group, the
prompt split, reductions, and the watchdog that turns a lost rank into a clear error.

How a step is split. The B prompts of a step (``trainer.prompts_per_step``, a
GLOBAL count) are cut into ``world_size`` contiguous slices; rank r owns prompts
``[r B/W, (r+1) B/W)`` with every rollout of those prompts (policy and momentum), so the
entropy filter, the vote and the advantages stay local. What crosses ranks:

- the loss normalisers (loss tokens / sequences of the update), summed, so each rank's loss
  is its partial sum over the GLOBAL normaliser and the summed gradients equal the 1-rank
  gradient (`all_reduce` in `mgrpo.train.step_updates`);
- the gradients: reduce-scattered by FSDP2 (which averages, so the loss is scaled by W,
  `DistContext.grad_scale`), or all-reduced (summed) when ``distributed.fsdp`` is false
  (replicated weights, DDP-style: `all_reduce_grads_`);
- the per-rollout statistics behind the metrics (a few numbers per rollout), gathered so the
  1-rank formulas run on the whole batch (`gather_objects`); timings reduce with max.

The FSDP2 wrapping lives in `mgrpo.parallel.fsdp`, sharded checkpoints in
`mgrpo.parallel.sharded_checkpoint`. Works on CPU with gloo (torch 2.13, tested) and on CUDA
with nccl.

A dead or hung rank: every collective has ``distributed.timeout_s``; the survivors raise
`RankLostError` (a clear message naming the rank and the stage) instead of hanging, and
torchrun tears the job down. `--resume` continues from the last complete checkpoint.
"""

from __future__ import annotations

import datetime
import os
import socket
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import torch
import torch.distributed as dist
from torch import nn


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


# What a collective raises when the group itself failed (a peer closed its connection,
# died or hung past the timeout), as opposed to an error of this rank's own computation.
_COMM_MARKERS = ("gloo", "nccl", "connection closed", "connection reset", "broken pipe",
                 "timed out", "timeout", "socket", "process group", "processgroup", "c10d",
                 "watchdog", "peer")


def is_communication_error(exc: BaseException) -> bool:
    """True when `exc` means the process group failed (`torch.distributed.DistError`, or a
    RuntimeError from the backend naming a connection / timeout / NCCL / gloo failure); False
    for an error of this rank's own work (out of memory, a bad shape, a Python bug)."""
    if isinstance(exc, torch.OutOfMemoryError):
        return False
    if isinstance(exc, dist.DistError):
        return True
    if not isinstance(exc, RuntimeError):
        return False
    text = str(exc).lower()
    return any(marker in text for marker in _COMM_MARKERS)


@contextmanager
def collective(ctx: DistContext, stage: str) -> Iterator[None]:
    """Turn a failed/timed-out collective into `RankLostError` naming this rank and stage.
    Any other error (`is_communication_error` false: out of memory included) propagates
    unchanged, with its own message."""
    try:
        yield
    except RankLostError:
        raise
    except (RuntimeError, dist.DistError) as exc:
        if not ctx.active or not is_communication_error(exc):
            raise
        raise RankLostError(
            f"rank {ctx.rank}/{ctx.world_size}: a collective failed during {stage} "
            f"(another rank died, or hung past distributed.timeout_s={ctx.timeout_s:g}s): "
            f"{str(exc).splitlines()[0] if str(exc) else type(exc).__name__}. "
            f"Restart with --resume to continue from the last complete checkpoint."
        ) from exc


def abort(ctx: DistContext) -> None:
    """Tear this rank's process group down at once (no collective): the peers' pending and
    next collectives fail now (gloo: the connections close; NCCL: the communicators abort)
    and they raise `RankLostError`, instead of waiting for `distributed.timeout_s`; this
    process then exits without hanging in an NCCL destructor. No-op when single."""
    if not ctx.active or not dist.is_initialized():
        return
    try:
        if ctx.backend == "nccl":
            dist.distributed_c10d._abort_process_group()
        else:
            dist.destroy_process_group()
    except Exception as exc:  # noqa: BLE001 - already failing: say so, keep the first error
        print(f"[rank {ctx.rank}] mgrpo: aborting the process group failed too: {exc}",
              file=sys.stderr, flush=True)


@contextmanager
def stop_peers_on_error(ctx: DistContext) -> Iterator[None]:
    """Around a multi-rank job: an exception leaving the block on this rank (a local error,
    a signal, or a lost peer) aborts the process group before it propagates unchanged, and
    names this rank and the error on stderr."""
    try:
        yield
    except BaseException as exc:
        if ctx.active and ctx.world_size > 1 and dist.is_initialized():
            if not isinstance(exc, (RankLostError, KeyboardInterrupt)):  # a signal says itself
                first = str(exc).splitlines()[0] if str(exc) else ""
                rank_print(ctx, f"mgrpo: {type(exc).__name__}: {first}; aborting the process "
                                f"group so the other ranks stop now", all_ranks=True)
            abort(ctx)
        raise


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


GRAD_BUCKET_BYTES = 256 << 20  # at most this much gradient is copied into one flat buffer


def grad_buckets(grads: list[torch.Tensor], max_bytes: int) -> list[list[torch.Tensor]]:
    """`grads` in order, cut into buckets of one dtype and at most `max_bytes` each; a tensor
    larger than `max_bytes` is a bucket of its own (reduced in place, never copied)."""
    buckets: list[list[torch.Tensor]] = []
    open_: dict[torch.dtype, tuple[list[torch.Tensor], int]] = {}
    for g in grads:
        size = g.numel() * g.element_size()
        bucket, used = open_.get(g.dtype, (None, 0))
        if bucket is None or used + size > max_bytes:
            bucket, used = [], 0
            buckets.append(bucket)
        bucket.append(g)
        open_[g.dtype] = (bucket, used + size)
    return buckets


@torch.no_grad()
def all_reduce_grads_(ctx: DistContext, params: list[nn.Parameter], *,
                      bucket_bytes: int = GRAD_BUCKET_BYTES) -> None:
    """Replicated (non-FSDP) data parallel: sum every gradient over ranks, in place (the loss
    is already normalised by the global counts). Gradients go in buckets of at most
    `bucket_bytes` (`grad_buckets`): a bucket of several is flattened into one buffer for
    one all-reduce, a single tensor is reduced in place, so the extra memory is one bucket,
    not a flat copy of every gradient (+4 B/param)."""
    if not ctx.active or ctx.world_size == 1 or ctx.fsdp:
        return
    for p in params:
        if p.grad is None:
            p.grad = torch.zeros_like(p)
    for grads in grad_buckets([p.grad for p in params], bucket_bytes):
        if len(grads) == 1 and grads[0].is_contiguous():
            with collective(ctx, "gradient all-reduce"):
                dist.all_reduce(grads[0])
            continue
        flat = torch.cat([g.reshape(-1) for g in grads])
        with collective(ctx, "gradient all-reduce"):
            dist.all_reduce(flat)
        pieces = flat.split([g.numel() for g in grads])
        torch._foreach_copy_(grads, [x.view_as(g) for x, g in zip(pieces, grads)])
