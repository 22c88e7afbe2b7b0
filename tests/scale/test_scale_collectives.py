"""Collectives on two gloo ranks (CPU, spawned processes): the replicated gradient all-reduce
in bounded buckets; an error on one rank stops the other at once (not at the timeout); and
`collective()` tells a failed process group from this rank's own errors."""

from __future__ import annotations

import os
import socket
import time

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from mgrpo.parallel.distributed import DistContext, RankLostError, collective, grad_buckets

TIMEOUT_S = 60  # the watchdog a peer would otherwise wait for

SHAPES = [(300,), (17, 5), (2000,), (3,), (40, 40), (7,)]  # fp32: 1200, 340, 8000, 12, 6400, 28 B


def _port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _spawn(tmp_path, scenario: str) -> dict:
    mp.spawn(_worker, args=(2, _port(), str(tmp_path), scenario), nprocs=2, join=True)
    return torch.load(tmp_path / "result.pt", weights_only=False)


def _grads(rank: int) -> list[torch.Tensor]:
    g = torch.Generator().manual_seed(rank)
    return [torch.randn(s, generator=g) for s in SHAPES]


def _worker(rank: int, world: int, port: int, out: str, scenario: str) -> None:
    os.environ.update(RANK=str(rank), WORLD_SIZE=str(world), LOCAL_RANK=str(rank),
                      MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    torch.set_num_threads(1)
    import torch.distributed as dist

    from mgrpo.parallel import distributed as D

    ctx = D.init_distributed(fsdp=False, device="cpu", timeout_s=TIMEOUT_S)
    result: dict = {}
    try:
        if scenario == "buckets":
            sizes: list[int] = []
            reduce = dist.all_reduce

            def recording(t, *args, **kwargs):
                sizes.append(t.numel() * t.element_size())
                return reduce(t, *args, **kwargs)

            dist.all_reduce = recording
            params = [torch.nn.Parameter(torch.zeros(s)) for s in SHAPES]
            for p, g in zip(params, _grads(rank)):
                p.grad = g.clone()
            D.all_reduce_grads_(ctx, params, bucket_bytes=2048)
            result = {"grads": [p.grad for p in params], "sizes": sizes}
        elif scenario == "local error":  # rank 1 fails on its own; rank 0 is in a collective
            start = time.monotonic()
            try:
                with D.stop_peers_on_error(ctx):
                    if rank == 1:
                        raise ValueError("a bug on rank 1 only")
                    D.all_reduce(ctx, [1.0], stage="metrics")
            except (ValueError, D.RankLostError) as exc:
                result = {"error": type(exc).__name__, "message": str(exc),
                          "elapsed": time.monotonic() - start}
    finally:
        if rank == 0:
            torch.save(result, os.path.join(out, "result.pt"))
        if dist.is_initialized():
            dist.destroy_process_group()


def test_grad_buckets_keep_order_dtype_and_the_bound() -> None:
    grads = [torch.zeros(s) for s in SHAPES] + [torch.zeros(10, dtype=torch.bfloat16)]
    buckets = grad_buckets(grads, 2048)
    assert [g for b in buckets for g in b] != [] and sum(len(b) for b in buckets) == len(grads)
    for bucket in buckets:
        assert len({g.dtype for g in bucket}) == 1
        size = sum(g.numel() * g.element_size() for g in bucket)
        assert size <= 2048 or len(bucket) == 1  # an oversized tensor goes alone
    flat = [g for b in buckets for g in b if g.dtype == torch.float32]
    assert all(a is b for a, b in zip(flat, grads[:-1]))  # order kept within a dtype


def test_bucketed_all_reduce_sums_every_gradient_within_the_bound(tmp_path) -> None:
    result = _spawn(tmp_path, "buckets")
    expected = [a + b for a, b in zip(_grads(0), _grads(1))]
    for got, want in zip(result["grads"], expected):
        torch.testing.assert_close(got, want, rtol=0, atol=0)
    largest = max(torch.zeros(s).numel() * 4 for s in SHAPES)
    assert len(result["sizes"]) > 1 and max(result["sizes"]) <= max(2048, largest)
    oversized = {torch.zeros(s).numel() * 4 for s in SHAPES} - set(range(2049))
    assert {n for n in result["sizes"] if n > 2048} <= oversized  # reduced alone, in place
    assert sum(result["sizes"]) == sum(torch.zeros(s).numel() * 4 for s in SHAPES)


def test_an_error_on_one_rank_stops_the_others_at_once(tmp_path) -> None:
    """Rank 1 raises outside any collective; rank 0, waiting in an all-reduce, must raise
    RankLostError within seconds, not after distributed.timeout_s."""
    result = _spawn(tmp_path, "local error")
    assert result["error"] == "RankLostError", result
    assert "rank 0/2: a collective failed during metrics" in result["message"]
    assert result["elapsed"] < TIMEOUT_S / 4, result


ACTIVE = DistContext(rank=0, world_size=2, backend="gloo")


@pytest.mark.parametrize("error", [
    torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB"),
    RuntimeError("The size of tensor a (3) must match the size of tensor b (4)"),
    ValueError("a bad value"),
], ids=["oom", "shape", "value"])
def test_collective_reraises_this_ranks_own_errors_unchanged(error) -> None:
    with pytest.raises(type(error)) as info, collective(ACTIVE, "gradient all-reduce"):
        raise error
    assert info.value is error and not isinstance(info.value, RankLostError)


@pytest.mark.parametrize("error", [
    dist.DistBackendError("NCCL communicator was aborted on rank 1"),
    RuntimeError("[../third_party/gloo/gloo/transport/tcp/pair.cc:534] Connection closed by peer"),
    RuntimeError("Timed out waiting 60000ms for send operation to complete"),
], ids=["dist-error", "gloo-closed", "timeout"])
def test_collective_reports_a_failed_group_as_a_lost_rank(error) -> None:
    with pytest.raises(RankLostError, match="rank 0/2: a collective failed during metrics"):
        with collective(ACTIVE, "metrics"):
            raise error
