"""Small pieces of the scale-out code: launcher argv, seeds, metric merging, config keys."""

from __future__ import annotations

import sys

import pytest
import torch

from mgrpo.config import ConfigError, resolve_config
from mgrpo.parallel.distributed import SINGLE, all_reduce, gather_objects, init_distributed
from mgrpo.parallel.launch import strip_nproc, torchrun_command
from mgrpo.seeds import step_seed
from mgrpo.train.logs.step_metrics import MetricInputs
from mgrpo.train.logs.step_metrics import step_metrics as _step_metrics
from mgrpo.train.step_shaping import ShapingStats


def test_launcher_reruns_the_same_command_under_torchrun():
    argv = ["tiny", "-o", "out", "--nproc", "2", "optim.lr=1e-3", "--nproc=4", "--resume"]
    assert strip_nproc(argv) == ["tiny", "-o", "out", "optim.lr=1e-3", "--resume"]
    cmd = torchrun_command(2, ["tiny", "-o", "out"])
    assert cmd[0] == sys.executable
    assert cmd[1:] == ["-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
                       "-m", "mgrpo", "train", "tiny", "-o", "out"]
    with pytest.raises(ValueError, match="--nproc must be >= 1"):
        torchrun_command(0, [])


def test_nproc_inside_torchrun_is_refused(monkeypatch):
    from mgrpo.parallel.launch import launch

    monkeypatch.setenv("WORLD_SIZE", "2")
    with pytest.raises(ValueError, match="inside a torchrun job"):
        launch(2, ["tiny"])


def test_single_process_needs_no_process_group(monkeypatch):
    for key in ("RANK", "WORLD_SIZE", "LOCAL_RANK"):
        monkeypatch.delenv(key, raising=False)
    ctx = init_distributed()
    assert ctx is SINGLE and not ctx.active and ctx.is_main and ctx.grad_scale == 1.0
    assert all_reduce(ctx, [1.5, 2.0]) == [1.5, 2.0]
    assert gather_objects(ctx, {"a": 1}) == [{"a": 1}]
    monkeypatch.setenv("WORLD_SIZE", "two")
    with pytest.raises(ValueError, match="WORLD_SIZE='two' is not an integer"):
        init_distributed()


def test_seeds_depend_on_the_global_prompt_not_on_the_rank():
    assert step_seed(0, 3, 1) == step_seed(0, 3, 1, 0)  # prompt 0: the whole-batch seed
    seeds = {step_seed(0, 3, stream, p) for stream in (0, 1) for p in range(1, 9)}
    assert len(seeds) == 16  # distinct per (stream, prompt)


def _inputs(rewards, keep, votes, lengths=None, policy_correct=True):
    rewards = torch.tensor(rewards)
    B, M = rewards.shape
    return MetricInputs(
        rewards=rewards, policy_entropy=rewards + 1, momentum_entropy=None,
        keep=torch.tensor(keep), votes=votes, ties=[False] * len(votes),
        lengths=torch.arange(B * M).float() if lengths is None else lengths,
        truncated=[0.0] * (B * M), parsed=[1.0] * (B * M), n_policy=[M] * B,
        policy_correct=[1.0] * (B * M) if policy_correct else None,
        label_correct=[1.0] * B, pool_correct=None, majority_correct=None,
        shaping=ShapingStats(),
    )


def test_metrics_of_merged_rank_inputs_equal_the_whole_batch():
    a = _inputs([[1.0, 0.0]], [[True, False, True]], [(False, 0.5)])
    b = _inputs([[1.0, 1.0], [0.0, 0.0]], [[True] * 3, [False] * 3], [(True, 0.0), (False, 1.0)])
    whole = _inputs([[1.0, 0.0], [1.0, 1.0], [0.0, 0.0]],
                    [[True, False, True], [True] * 3, [False] * 3],
                    [(False, 0.5), (True, 0.0), (False, 1.0)],
                    lengths=torch.cat([a.lengths, b.lengths]))
    merged = _step_metrics(MetricInputs.cat([a, b]), 2)
    assert merged == _step_metrics(whole, 2)
    assert merged["label/none_fraction"] == pytest.approx(1 / 3)
    assert merged["filter/dropped_fraction"] == pytest.approx(4 / 9)
    b = _inputs([[1.0, 1.0], [0.0, 0.0]], [[True] * 3, [False] * 3], [(True, 0.0), (False, 1.0)],
                policy_correct=False)  # one rank without ground truth -> no accuracy at all
    assert "policy/accuracy" not in _step_metrics(MetricInputs.cat([a, b]), 2)


def test_shaping_stats_concatenate_over_ranks():
    a, b = ShapingStats([0.1], [1.0]), ShapingStats([0.2, 0.3], [0.0, 1.0])
    assert ShapingStats.cat([a, b]) == ShapingStats([0.1, 0.2, 0.3], [1.0, 0.0, 1.0])
    assert ShapingStats.cat([a, ShapingStats()]) == ShapingStats()


def test_config_keys_for_lora_and_distributed():
    cfg = resolve_config("tiny", ["model.lora.r=8", "model.lora.export=adapters",
                                  "distributed.fsdp=true", "distributed.timeout_s=30"])
    assert cfg.model.lora.r == 8 and cfg.distributed.fsdp is True
    with pytest.raises(ConfigError, match="model.lora.export"):
        resolve_config("tiny", ["model.lora.export=zip"])
    with pytest.raises(ConfigError, match="distributed.backend"):
        resolve_config("tiny", ["distributed.backend=mpi"])
    with pytest.raises(ConfigError, match="unknown key 'distributed.world'"):
        resolve_config("tiny", ["distributed.world=2"])
