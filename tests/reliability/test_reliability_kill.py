"""SIGKILL / SIGTERM / Ctrl-C at chosen and random moments: nothing completed is lost.

Each test drives real `mgrpo train tiny` subprocesses (3 steps, a checkpoint every step) and
kills them while they generate, take an optimizer step, write a checkpoint or metrics, or at a
random time (`MGRPO_FAULT`, see `mgrpo.train.run.faults`, and timers). Then `--resume` runs to the end
and the result must equal an uninterrupted run: same metrics (time/* excluded), bit-identical
policy, momentum and optimizer tensors. The default tests kill a few points; the long sweep
over many seeds is `@pytest.mark.slow` and prints how many kills landed and survived.
"""

from __future__ import annotations

import random
import signal
import warnings

import pytest
from reliability_runs import (
    MAX_STEPS,
    assert_same_run,
    checkpoint_steps,
    metrics,
    run_killed_after,
    run_train,
)

from mgrpo.train.run.checkpoint import latest_checkpoint, verify_checkpoint

# Hits per 3-step run: checkpoint_write 6 per checkpoint; optimizer_step 1 per step;
# generate ~17 embedding passes per generate call (validation at steps 0 and 3 included).
FAULT_RANGES = {"checkpoint_write": 18, "optimizer_step": 3, "metrics_write": 3, "generate": 160}
SWEEP_SEEDS = range(12)
KILLS_PER_LINEAGE = 3


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    out = tmp_path_factory.mktemp("reference") / "run"
    proc = run_train(out)
    assert proc.returncode == 0, proc.stderr
    return out


def _latest_step(out) -> int | None:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ckpt = latest_checkpoint(out / "checkpoints")
    return None if ckpt is None else int(ckpt.name.split("-")[1])


def survive(out, kills) -> list[str]:
    """Apply each kill (a MGRPO_FAULT spec, or seconds after config.yaml appears for a timer
    SIGKILL) to successive invocations, then `--resume` to the end. Returns the kills that
    landed (the process died of SIGKILL), each tagged with the checkpoint it left."""
    landed = []
    for kill in kills:
        if isinstance(kill, str):
            proc = run_train(out, fault=kill)
            rc, err = proc.returncode, proc.stderr
        else:
            rc, err = run_killed_after(out, kill)
        if rc == 0:
            return landed  # finished before the kill point; later kills are moot
        assert rc == -signal.SIGKILL, err[-3000:]
        landed.append(f"{kill} -> last good checkpoint {_latest_step(out)}")
        for step in checkpoint_steps(out):  # no step-N directory is ever half-written
            assert verify_checkpoint(out / "checkpoints" / f"step-{step}") is None
    expected = _latest_step(out)
    final = run_train(out)
    assert final.returncode == 0, final.stderr[-3000:]
    if expected is not None:
        assert f"step-{expected} (step {expected})" in final.stderr, final.stderr[-2000:]
    return landed


def test_kill_during_checkpoint_write_generation_and_at_a_random_time(tmp_path, reference):
    out = tmp_path / "run"
    # 8th checkpoint_write hit: step 2's checkpoint, after its tokenizer files (a temp dir is
    # left behind); then 40 embedding passes into the resumed run's generation; then a timer.
    landed = survive(out, ["checkpoint_write:8", "generate:40", 4.0])
    assert len(landed) >= 2, landed
    assert landed[0].endswith("checkpoint 1"), landed
    assert_same_run(reference, out)
    print(f"kill points landed and survived: {landed}")


@pytest.mark.slow
def test_kill_during_optimizer_step_and_metrics_write(tmp_path, reference):
    out = tmp_path / "run"
    landed = survive(out, ["optimizer_step:2", "metrics_write:1"])
    assert len(landed) == 2, landed
    assert_same_run(reference, out)


def test_sigterm_finishes_the_step_checkpoints_and_exits_nonzero(tmp_path, reference):
    out = tmp_path / "run"
    proc = run_train(out, fault="optimizer_step:2:term")  # arrives inside step 2
    assert proc.returncode == 128 + signal.SIGTERM, proc.stderr[-2000:]
    last = proc.stderr.strip().splitlines()[-1]
    assert last == "mgrpo train: stopped by SIGTERM after step 2 (checkpointed); --resume continues"
    assert "Traceback" not in proc.stderr
    assert [r["step"] for r in metrics(out)] == [0, 1, 2]
    assert _latest_step(out) == 2
    assert run_train(out).returncode == 0
    assert_same_run(reference, out)


def test_second_signal_abandons_the_step_and_keeps_the_previous_checkpoint(tmp_path):
    out = tmp_path / "run"
    # First SIGTERM in step 2's optimizer step, a second during step 2's checkpoint write.
    proc = run_train(out, fault="optimizer_step:2:term,checkpoint_write:8:term")
    assert proc.returncode == 128 + signal.SIGTERM, proc.stderr[-2000:]
    assert "SIGTERM again: current step abandoned" in proc.stderr.strip().splitlines()[-1]
    assert checkpoint_steps(out) == [1] and _latest_step(out) == 1
    assert not list((out / "checkpoints").glob(".tmp-*"))  # the partial write was removed


def test_ctrl_c_to_the_process_group(tmp_path):
    """SIGINT to the whole group (trainer and its answer-checker worker), as a terminal does."""
    out = tmp_path / "run"
    rc, err = run_killed_after(out, 0.0, sig=signal.SIGINT, group=True, wait_for="checkpoints")
    if rc == 0:
        pytest.skip("the run finished before the signal (extremely slow start?)")
    assert rc == 128 + signal.SIGINT, err[-2000:]
    assert err.strip().splitlines()[-1].startswith("mgrpo train: stopped by SIGINT")
    assert "Traceback" not in err
    done = [r["step"] for r in metrics(out)]
    assert done and _latest_step(out) == done[-1] < MAX_STEPS


@pytest.mark.slow
@pytest.mark.parametrize("seed", list(SWEEP_SEEDS))
def test_random_kill_sweep(tmp_path, reference, seed):
    rng = random.Random(seed)
    kills = []
    for _ in range(KILLS_PER_LINEAGE):
        if rng.random() < 0.5:
            point = rng.choice(sorted(FAULT_RANGES))
            kills.append(f"{point}:{rng.randint(1, FAULT_RANGES[point])}")
        else:
            kills.append(round(rng.uniform(0.0, 12.0), 2))
    out = tmp_path / "run"
    landed = survive(out, kills)
    assert_same_run(reference, out)
    print(f"seed {seed}: tried {kills}; landed and survived {len(landed)}: {landed}")
