"""`mgrpo train --nproc 2` end to end (CPU, gloo): equality with one process, a killed rank,
resume with a different world size. Slow (several torchrun launches): `-m slow`."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

pytestmark = pytest.mark.slow

COMMON = ["trainer.progress=false", "data.answer_kind=number", "validation.data=null",
          "distributed.seed_per_prompt=true", "distributed.timeout_s=60"]
METRIC_ATOL = 1e-5
WEIGHT_ATOL = 1e-5
KILL_BOUND_S = 120  # the survivors and the launcher must be gone this long after a SIGKILL


def _env(tag: str | None = None) -> dict[str, str]:
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    env["PYTHONPATH"] = str(Path(__file__).resolve().parents[2] / "src")
    if tag:
        env["MGRPO_SCALE_TEST_TAG"] = tag
    return env


def _train(out: Path, *extra: str, check: bool = True) -> subprocess.CompletedProcess:
    cmd = [sys.executable, "-m", "mgrpo", "train", "tiny", "-o", str(out), *COMMON, *extra]
    proc = subprocess.run(cmd, env=_env(), capture_output=True, text=True, timeout=600)
    if check:
        assert proc.returncode == 0, proc.stderr[-3000:]
    return proc


def _metrics(run: Path) -> list[dict]:
    return [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]


def _assert_same_run(a: Path, b: Path) -> None:
    ma, mb = _metrics(a), _metrics(b)
    assert [m["step"] for m in ma] == [m["step"] for m in mb]
    assert any(m["grad_norm"] > 0 for m in ma)
    for x, y in zip(ma, mb):
        for key, value in x.items():
            if key.startswith("time/") or not isinstance(value, float):
                continue
            assert abs(value - y[key]) <= METRIC_ATOL, (x["step"], key, value, y[key])
    step = ma[-1]["step"]
    wa = load_file(str(a / f"checkpoints/step-{step}/model.safetensors"))
    wb = load_file(str(b / f"checkpoints/step-{step}/model.safetensors"))
    for name, tensor in wa.items():
        torch.testing.assert_close(wb[name], tensor, rtol=0, atol=WEIGHT_ATOL, msg=name)


def test_two_processes_match_one_and_resume_on_another_world_size(tmp_path):
    steps = ["trainer.max_steps=3"]
    _train(tmp_path / "one", *steps)
    _train(tmp_path / "two", "--nproc", "2", *steps)  # FSDP2 (auto with 2 ranks)
    _assert_same_run(tmp_path / "one", tmp_path / "two")
    assert (tmp_path / "two/checkpoints/step-3/sharded").is_dir()
    # 2 ranks for 1 step, then the sharded checkpoint resumed by ONE process (FSDP, W = 1)
    _train(tmp_path / "mixed", "--nproc", "2", *steps, "trainer.stop_after=1")
    _train(tmp_path / "mixed", "--resume", *steps, "distributed.fsdp=true")
    _assert_same_run(tmp_path / "one", tmp_path / "mixed")


def _pids_with(tag: str, rank: str) -> list[int]:
    found = []
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            environ = (proc / "environ").read_bytes().split(b"\0")
        except OSError:
            continue
        if f"MGRPO_SCALE_TEST_TAG={tag}".encode() in environ and f"RANK={rank}".encode() in environ:
            found.append(int(proc.name))
    return found


@pytest.mark.parametrize("how", ["dead", "hung"])
def test_lost_rank_stops_the_job_in_bounded_time_and_resume_continues(tmp_path, how):
    """dead: SIGKILL rank 1 (its sockets close; torchrun sees the exit). hung: SIGSTOP it
    (sockets stay open): rank 0 must give up after distributed.timeout_s with a clear error."""
    out, tag = tmp_path / "run", uuid.uuid4().hex
    args = ["--nproc", "2", "trainer.max_steps=6", "trainer.save_every=1", "distributed.timeout_s=15"]
    cmd = [sys.executable, "-m", "mgrpo", "train", "tiny", "-o", str(out), *COMMON, *args]
    job = subprocess.Popen(cmd, env=_env(tag), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 400
        while time.monotonic() < deadline:
            if (out / "checkpoints/step-2").is_dir():
                break
            assert job.poll() is None, job.communicate()[1][-3000:]
            time.sleep(0.5)
        victims = _pids_with(tag, "1")
        assert victims, "rank 1 not found"
        os.kill(victims[0], signal.SIGKILL if how == "dead" else signal.SIGSTOP)
        killed_at = time.monotonic()
        _, stderr = job.communicate(timeout=KILL_BOUND_S + 60)
        elapsed = time.monotonic() - killed_at
    finally:
        if job.poll() is None:
            job.kill()
        survivors = _pids_with(tag, "0")
        for pid in survivors + _pids_with(tag, "1"):  # never leave a stopped rank behind
            os.kill(pid, signal.SIGKILL)
    assert job.returncode != 0
    assert elapsed < KILL_BOUND_S, f"took {elapsed:.0f}s to stop after a rank was lost"
    if how == "dead":
        assert "SIGKILL" in stderr or "rank 0/2: a collective failed" in stderr, stderr[-3000:]
    else:
        assert "rank 0/2: a collective failed" in stderr and "distributed.timeout_s=15" in stderr, stderr[-3000:]
    assert not survivors, "rank 0 survived the job"
    done = len(_metrics(out))
    assert 2 <= done < 6
    _train(out, "--resume", *args)
    steps = [m["step"] for m in _metrics(out)]
    assert steps == list(range(1, 7))


def test_two_updates_per_step_idle_ranks_keep_lockstep(tmp_path):
    """updates_per_step=2 with one prompt per rank: in each update one rank has no rollouts
    and runs zero-weight FSDP forwards/backwards to keep the collectives in step."""
    steps = ["trainer.max_steps=2", "trainer.updates_per_step=2"]
    _train(tmp_path / "one", *steps)
    _train(tmp_path / "two", "--nproc", "2", *steps)
    _assert_same_run(tmp_path / "one", tmp_path / "two")


def test_two_processes_match_one_with_the_loss_and_update_options(tmp_path):
    """The options that gather over ranks (the top-entropy quantile, dynamic-sampling
    resampling) and the extra passes (epochs): two FSDP ranks give the one-process run."""
    steps = ["trainer.max_steps=2", "algorithm.epochs=2", "algorithm.top_entropy_quantile=0.5",
             "algorithm.ratio_level=sequence", "algorithm.dynamic_sampling=resample",
             "algorithm.resample_budget=1"]
    _train(tmp_path / "one", *steps)
    _train(tmp_path / "two", "--nproc", "2", *steps)
    _assert_same_run(tmp_path / "one", tmp_path / "two")
    rows = _metrics(tmp_path / "one")
    assert all("dynamic/resampled_groups" in r and "loss/top_entropy_threshold" in r for r in rows)
