"""Data parallel (gloo, CPU): 2 ranks == 1 rank, replicated and FSDP2, in-process steps.

The 2 ranks run in spawned processes (torch.multiprocessing), each with its half of every
step's prompts; the reference is the same 2 steps on one process. With
`distributed.seed_per_prompt` the rollouts are identical, so the metrics and the weights
may differ only by fp32 reduction order (different micro-batch padding, gradient sums):
metrics within METRIC_ATOL, weights within WEIGHT_ATOL after 2 AdamW steps at lr 1e-3.
"""

from __future__ import annotations

import contextlib
import functools
import os
import socket
from pathlib import Path

import pytest
import torch
import torch.multiprocessing as mp

from mgrpo.config import config_from_dict, load_recipe
from mgrpo.parallel.distributed import local_slice
from mgrpo.train.run.trainer import build_run
from mgrpo.train.step import StepBatch, train_step

STEPS = 2
METRIC_ATOL = 1e-5  # |metric(2 ranks) - metric(1 rank)|
WEIGHT_ATOL = 1e-5  # max |w(2 ranks) - w(1 rank)| (AdamW normalises tiny grad differences)


def _cfg(fsdp: bool | None):
    data = load_recipe("tiny")
    data["data"]["answer_kind"] = "number"  # random text often ends in a digit: real rewards
    data["trainer"].update(progress=False, prompts_per_step=2, micro_batch_size=4)
    data["generation"]["max_new_tokens"] = 8
    data["validation"] = {"data": None}
    data["distributed"] = {"seed_per_prompt": True, "fsdp": fsdp, "timeout_s": 60}
    return config_from_dict(data)


def _train(cfg, run_dir):
    from mgrpo.parallel.fsdp import full_tensor

    run = build_run(cfg, run_dir)
    ctx = run.models.dist
    history = []
    for step in range(1, STEPS + 1):
        records, ids = run.train_set.batch(step, cfg.trainer.prompts_per_step)
        mine = local_slice(ctx, len(ids))
        batch = StepBatch(ids[mine.start:mine.stop], [r.answer for r in records[mine.start:mine.stop]],
                          prompt_offset=mine.start, global_prompts=len(ids))
        metrics = train_step(run.models, batch, cfg, run.spec, step)
        history.append({k: v for k, v in metrics.items() if not k.startswith("time/")})
    weights = {n: full_tensor(p.detach()).clone() for n, p in run.models.policy.named_parameters()}
    momentum = None
    if run.models.momentum is not None:
        momentum = [full_tensor(t).clone() for t in getattr(run.models.momentum, "sharded", run.models.momentum.master)]
    return history, weights, momentum


def _worker(rank: int, world: int, port: int, out_dir: str, modes: tuple[str, ...]) -> None:
    os.environ.update(RANK=str(rank), WORLD_SIZE=str(world), LOCAL_RANK=str(rank),
                      MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    torch.set_num_threads(1)
    results = {}
    with _full_forward():
        for name in modes:
            results[name] = _train(_cfg(name == "fsdp"), Path(out_dir) / f"run-{name}")
    if rank == 0:
        torch.save(results, os.path.join(out_dir, "results.pt"))
    import torch.distributed as dist

    if dist.is_initialized():
        dist.destroy_process_group()


def _port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _two_ranks(tmp_path_factory, modes: tuple[str, ...]):
    out = tmp_path_factory.mktemp("dp")
    mp.spawn(_worker, args=(2, _port(), str(out), modes), nprocs=2, join=True)
    return torch.load(out / "results.pt", weights_only=False)


@contextlib.contextmanager
def _full_forward():
    """Score with one full trunk forward per call on every side of a comparison. FSDP always
    does; the shared-prompt-prefix form (tested on its own against this one) batches each
    rank's distinct prompts, so its padding and hence its fp32 rounding depend on the split,
    and AdamW turns rounding-level gradient differences of near-zero entries into lr-sized
    weight differences. This test is about the data-parallel mechanics."""
    import mgrpo.train.step_updates

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(mgrpo.train.step_updates, "score_responses",
                      functools.partial(mgrpo.train.step_updates.score_responses, share_prefix=False))
        yield


@pytest.fixture(scope="module")
def one_rank_results(tmp_path_factory):
    with _full_forward():
        return _train(_cfg(False), tmp_path_factory.mktemp("single") / "run")


def test_two_ranks_fsdp_equal_one_rank(tmp_path_factory, one_rank_results):
    _compare(_two_ranks(tmp_path_factory, ("fsdp",))["fsdp"], one_rank_results, "fsdp")


@pytest.mark.slow
def test_two_ranks_replicated_equal_one_rank(tmp_path_factory, one_rank_results):
    _compare(_two_ranks(tmp_path_factory, ("replicated",))["replicated"], one_rank_results, "replicated")


def _compare(two, one_rank_results, mode):
    history2, weights2, momentum2 = two
    history1, weights1, momentum1 = one_rank_results
    assert any(h["grad_norm"] > 0 for h in history1), "the policy must actually move"
    for h1, h2 in zip(history1, history2):
        assert set(h1) == set(h2)
        for key, v1 in h1.items():
            if isinstance(v1, float) and v1 == v1:  # skip NaN (entropy/momentum is a number here)
                assert abs(v1 - h2[key]) <= METRIC_ATOL, (mode, key, v1, h2[key])
    for name, w1 in weights1.items():
        torch.testing.assert_close(weights2[name], w1, rtol=0, atol=WEIGHT_ATOL, msg=f"{mode} {name}")
    for m1, m2 in zip(momentum1, momentum2):
        torch.testing.assert_close(m2, m1, rtol=0, atol=WEIGHT_ATOL)


def test_prompts_per_step_must_divide_by_world_size():
    from mgrpo.parallel.distributed import DistContext

    with pytest.raises(ValueError, match="prompts_per_step=3 is not divisible by the world size 2"):
        local_slice(DistContext(rank=0, world_size=2, backend="gloo"), 3)
    assert local_slice(DistContext(rank=1, world_size=2, backend="gloo"), 8) == range(4, 8)
