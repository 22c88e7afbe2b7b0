"""Seed aggregation (mgrpo.report.arms) and the sweep engine's arms and jobs (mgrpo.report.sweep)."""

from __future__ import annotations

import statistics
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest
from report_synth import write_run

from mgrpo.cli.compare import configure_parser, run
from mgrpo.report.arms import (
    arm_table,
    band_caption,
    band_series,
    collapse_step,
    paired_table,
    summarize_arm,
)
from mgrpo.report.runs import load_run
from mgrpo.report.sweep import (
    Launch,
    parse_arm,
    parse_seeds,
    plan_runs,
    run_sweep,
    train_command,
)


def rows(val: dict[int, float], rewards: list[float]) -> list[dict]:
    out = [{"step": 0, "val/accuracy": val[0]}] if 0 in val else []
    for step, reward in enumerate(rewards, 1):
        row = {"step": step, "reward/mean": reward, "entropy/policy": 0.05}
        if step in val:
            row["val/accuracy"] = val[step]
        out.append(row)
    return out


def run_dir(tmp_path: Path, name: str, records: list[dict], seed: int = 0) -> Path:
    return write_run(tmp_path / name, steps=len(records), preset="srt", seed=seed, records=records)


RISING = [0.5 + 0.4 * s / 40 for s in range(1, 41)]


@pytest.mark.parametrize(
    ("val", "rewards", "expected"),
    [
        # falls 12 points below step 0 at step 20 and stays: collapsed at 20
        ({0: 0.60, 10: 0.55, 20: 0.48, 30: 0.45, 40: 0.47}, RISING, 20),
        # the best is at step 10 (above step 0): collapse measured from it
        ({0: 0.50, 10: 0.62, 20: 0.55, 30: 0.51, 35: 0.50, 40: 0.49}, RISING, 30),
        # the same drop with one later point: not confirmed (2 later points needed)
        ({0: 0.50, 10: 0.62, 20: 0.55, 30: 0.51, 40: 0.50}, RISING, None),
        # a drop at the last point: nothing shows it persists
        ({0: 0.60, 10: 0.58, 20: 0.59, 30: 0.57, 40: 0.45}, RISING, None),
        # drops, then recovers above best - drop: not collapsed
        ({0: 0.60, 10: 0.45, 20: 0.48, 30: 0.55, 40: 0.58}, RISING, None),
        # a drop with falling reward is not the self-rewarding collapse
        ({0: 0.60, 10: 0.45, 20: 0.40, 30: 0.40, 40: 0.40}, RISING[::-1], None),
        # within the margin: 9.9 points is not 10
        ({0: 0.60, 10: 0.55, 20: 0.501, 30: 0.501, 40: 0.501}, RISING, None),
    ],
)
def test_collapse_step(tmp_path, val, rewards, expected):
    log = load_run(run_dir(tmp_path, "r", rows(val, rewards))).metrics
    assert collapse_step(log, drop=0.10) == expected


def test_collapse_without_confirmation_counts_late_drops(tmp_path):
    """confirm=0 is the rule before it asked for 2 later points: a last-point drop counts."""
    val = {0: 0.50, 10: 0.62, 20: 0.55, 30: 0.51, 40: 0.50}
    log = load_run(run_dir(tmp_path, "r", rows(val, RISING))).metrics
    assert collapse_step(log, drop=0.10, confirm=0) == 30
    assert collapse_step(log, drop=0.10, confirm=1) == 30
    assert collapse_step(log, drop=0.10) is None


def test_collapse_reward_windows_never_overlap(tmp_path):
    """Reward rule as documented (docs/lab-study.md, collapse_step): the last w of the n
    rewards up to t against the first w, w = min(10, n // 2). At t = 6 that is steps 4-6
    against 1-3; a rule of "the 10 steps up to t against the first 10" compares the same
    steps with themselves there and could never call it."""
    rewards = [0.5, 0.5, 0.5, 0.7, 0.7, 0.7] + [0.7] * 14
    val = {0: 0.60, 6: 0.40, 12: 0.40, 16: 0.40, 20: 0.40}
    log = load_run(run_dir(tmp_path, "r", rows(val, rewards))).metrics
    assert collapse_step(log, drop=0.10) == 6
    # reward up only after step 10 and the accuracy already down at 6: called at 20, where
    # steps 11-20 (0.9) beat steps 1-10 (0.5), not at 6 or 12 (flat halves)
    late = [0.5] * 10 + [0.9] * 10
    log = load_run(run_dir(tmp_path, "late", rows(val, late))).metrics
    assert collapse_step(log, drop=0.10) == 12


def test_collapse_needs_two_validation_points(tmp_path):
    log = load_run(run_dir(tmp_path, "r", rows({0: 0.6}, RISING))).metrics
    assert collapse_step(log) is None


def test_summarize_arm_mean_std_and_step0_best(tmp_path):
    vals = [
        {0: 0.60, 10: 0.55, 20: 0.45, 30: 0.44, 40: 0.40},  # collapses at 20, best = step 0
        {0: 0.58, 10: 0.61, 20: 0.60, 30: 0.62, 40: 0.60},  # healthy, best = 0.62 at 30
        {0: 0.62, 10: 0.52, 20: 0.50, 30: 0.49, 40: 0.50},  # collapses at 10
    ]
    runs = [load_run(run_dir(tmp_path, f"s{i}", rows(v, RISING), seed=i)) for i, v in enumerate(vals)]
    arm = summarize_arm("srt", runs)
    assert arm.seeds == [0, 1, 2]
    assert arm.best_val.values == [0.60, 0.62, 0.62]
    assert arm.best_val_step.values == [0.0, 30.0, 0.0]
    assert arm.final_val.mean == pytest.approx(statistics.fmean([0.40, 0.60, 0.50]))
    assert arm.final_val.std == pytest.approx(statistics.stdev([0.40, 0.60, 0.50]))
    assert arm.collapse_steps == [20, None, 10] and arm.collapsed == 2
    assert arm.end_entropy.mean == pytest.approx(0.05)
    # another arm on seeds 0 and 1 ending at 0.45 and 0.70: +5 and +10 points over srt
    others = [
        load_run(run_dir(tmp_path, f"o{i}", rows({0: 0.6, 40: final}, RISING), seed=i))
        for i, final in enumerate([0.45, 0.70])
    ]
    other = summarize_arm("m-grpo", others)
    assert paired_table([arm]) is None
    paired = paired_table([arm, other])
    # +5 and +10 points: mean 7.5, sd 3.54, t(0.975, 1) = 12.706 -> half width 31.8; t = 3.0
    # on 1 df -> p = 0.205; the 0.45 seed drops on its last point only, which does not count
    # (nothing confirms it): collapsed 0/2 vs 2/3 -> Fisher p = 0.4
    assert paired.rows == [["m-grpo", "7.5 ± 3.5", "+7.5 [-24.3, +39.3]", "[+5.0, +10.0]",
                            "0.205", "0.205", "2/2", "0/2 vs 2/3", "0.400"]]
    row = arm_table([arm]).rows[0]
    assert row[:7] == ["srt", "3", "60.0 ± 2.0", "61.3 ± 1.2", "50.0 ± 10.0", "-10.0 ± 11.1", "2/3"]
    assert row[7] == "15 ± 7"  # mean ± std of the collapse steps of the collapsed seeds
    # no alarm was logged; a replay of today's alarm fires on the two falling seeds
    assert arm.alarm_steps == [None, None, None]
    replayed = summarize_arm("srt", runs, replay_alarm=True)
    assert [s is not None for s in replayed.alarm_steps] == [True, False, True]


def test_band_series_aligns_seeds_on_common_steps(tmp_path):
    a = load_run(run_dir(tmp_path, "a", rows({0: 0.5, 10: 0.6, 20: 0.7}, RISING[:20])))
    b = load_run(run_dir(tmp_path, "b", rows({0: 0.7, 10: 0.8}, RISING[:10])))
    steps, mean, std = band_series([a, b], "val/accuracy", sparse=True)
    assert steps.tolist() == [0.0, 10.0]
    assert mean.tolist() == pytest.approx([0.6, 0.7])
    assert std.tolist() == pytest.approx([np.std([0.5, 0.7], ddof=1)] * 2)
    assert band_series([a], "no/such", sparse=False) is None
    _, change, _ = band_series([a, b], "val/accuracy", sparse=True, relative=True)
    assert change.tolist() == pytest.approx([0.0, 0.1])


def test_band_titles_say_mean_and_std_only_over_several_seeds(tmp_path):
    a = load_run(run_dir(tmp_path, "a", rows({0: 0.5, 10: 0.6}, RISING[:10])))
    b = load_run(run_dir(tmp_path, "b", rows({0: 0.7, 10: 0.8}, RISING[:10])))
    assert band_caption({"srt": [a, b]}, sparse=True) == "mean ± std over seeds"
    assert band_caption({"srt": [a]}, sparse=True) == "one run per arm"
    assert "± std" not in band_caption({"srt": [a], "m-grpo": [b]}, sparse=False)
    assert band_caption({"srt": [a]}, sparse=False) == "one run per arm, EMA-smoothed (weight 0.8)"
    assert "n = 1" in band_caption({"srt": [a, b], "m-grpo": [b]}, sparse=True)


def test_parse_arm_and_plan():
    arm = parse_arm("no-iqr=m-grpo:algorithm.iqr_k=null,algorithm.momentum=0.9")
    assert (arm.name, arm.preset) == ("no-iqr", "m-grpo")
    assert arm.overrides == ("algorithm.iqr_k=null", "algorithm.momentum=0.9")
    # a list value keeps its commas: one override, not two broken halves
    arm = parse_arm("c=co-rewarding-ii:algorithm.teacher_alpha=[0.01, 0.01],optim.lr=1e-5")
    assert arm.overrides == ("algorithm.teacher_alpha=[0.01, 0.01]", "optim.lr=1e-5")
    specs = plan_runs("srt", None, "0-1,5", ["no-iqr=m-grpo:algorithm.iqr_k=null"])
    assert [s.dirname for s in specs] == [
        "srt-s0", "srt-s1", "srt-s5", "no-iqr-s0", "no-iqr-s1", "no-iqr-s5",
    ]
    assert specs[3].group == "no-iqr"
    argv = train_command("demo", Path("d"), specs[3], ["optim.lr=1e-4", "algorithm.iqr_k=1"])
    # the arm's overrides come last: they win over the overrides shared by every run
    assert argv[-3:] == ["optim.lr=1e-4", "algorithm.iqr_k=1", "algorithm.iqr_k=null"]
    for bad, message in [
        ("x", "expected NAME=PRESET"),
        ("a b=srt", "must be letters"),
        ("a=sft", "unknown preset 'sft'"),
        ("a=srt:seed=3", "seed is set by"),
        ("a=srt:lr", "not of the form key=value"),
        ("a=srt:algorithm.teacher_alpha=[0.1,0.2", "bracket is not closed"),
        ("a=srt:algorithm.teacher_alpha=0.1]", "closes no bracket"),
    ]:
        with pytest.raises(ValueError, match=message):
            parse_arm(bad)
    with pytest.raises(ValueError, match="given twice"):
        plan_runs("srt", None, None, ["srt=srt:optim.lr=1"])
    with pytest.raises(ValueError, match="which --rollouts sweeps"):
        plan_runs(None, "8", None, ["g=srt:algorithm.rollouts=4"])
    with pytest.raises(ValueError, match="listed twice"):
        plan_runs("srt", None, "0-2,1")
    assert parse_seeds("1,3,6-8") == [1, 3, 6, 7, 8]
    for bad, message in [("1-x", "not an integer"), ("3-1", "empty range"), ("-1", "must be >= 0")]:
        with pytest.raises(ValueError, match=f"--seeds: .*{message}"):
            parse_seeds(bad)


class RecordingRunner:
    """Writes a finished two-step run; records each launch and the peak concurrency."""

    def __init__(self) -> None:
        self.launches: list[tuple[list[str], Launch]] = []
        self.active = 0
        self.peak = 0
        self.lock = threading.Lock()

    def __call__(self, argv: list[str], run_dir: Path, launch: Launch) -> int:
        with self.lock:
            self.launches.append((argv, launch))
            self.active += 1
            self.peak = max(self.peak, self.active)
        time.sleep(0.2)
        seed = int(dict(a.split("=", 1) for a in argv if "=" in a)["seed"])
        write_run(run_dir, steps=2, preset="srt", seed=seed,
                  records=rows({0: 0.5, 2: 0.6}, [0.5, 0.6]))
        with self.lock:
            self.active -= 1
        return 0


def test_jobs_run_side_by_side_with_one_thread_each(tmp_path):
    runner = RecordingRunner()
    specs = plan_runs("srt", None, "0-3")
    outcomes = run_sweep("demo", specs, tmp_path, [], runner=runner, jobs=2, gpus=[], log=lambda m: None)
    assert [o.spec.seed for o in outcomes] == [0, 1, 2, 3]  # spec order, whatever finished first
    assert runner.peak == 2
    for argv, launch in runner.launches:
        assert argv[:4] == [sys.executable, "-m", "mgrpo", "train"]
        assert "trainer.threads=1" in argv and launch.env["OMP_NUM_THREADS"] == "1"
        assert launch.log_path is not None and launch.log_path.parent == tmp_path / "logs"


def test_runs_are_named_by_arm(tmp_path):
    """Each run gets trainer.run_name = its arm directory, and the report names it so."""
    from mgrpo.report.runs import run_display_name

    runner = RecordingRunner()
    specs = plan_runs(None, None, "0", ["m-grpo-N8=m-grpo:algorithm.momentum_rollouts=8"])
    run_sweep("demo", specs, tmp_path, [], runner=runner, log=lambda m: None)
    (argv, _), = runner.launches
    assert "trainer.run_name=m-grpo-N8-s0" in argv
    flat = {"algorithm.preset": "m-grpo", "algorithm.rollouts": 16, "seed": 0}
    assert run_display_name(flat, "dir") == "m-grpo G=16 seed=0"
    assert run_display_name({**flat, "trainer.run_name": "m-grpo-N8-s0"}, "dir") == "m-grpo-N8-s0"


def test_sweep_builds_each_lab_model_once_before_the_jobs(tmp_path, monkeypatch):
    """--jobs N: the lab models the runs load are built first (in a child `mgrpo lab build`,
    on the run's kernel path), once each."""
    import mgrpo.report.sweep as sweep

    built: list[str] = []
    monkeypatch.setattr(sweep, "build_lab_world", lambda name, kernels: built.append(name) or "x")
    runner = RecordingRunner()
    specs = plan_runs("srt,m-grpo", None, "0-1", ["w=srt:model.name=lab:noise30",
                                                  "n=srt:model.lab_kernels=native"])
    run_sweep("demo", specs, tmp_path, [], runner=runner, jobs=2, gpus=[], log=lambda m: None,
              prebuild=True)
    assert built == ["lab", "lab:noise30", "lab"] and len(runner.launches) == 8
    built.clear()
    run_sweep("tiny", plan_runs("srt", None, "0"), tmp_path / "t", [], runner=runner,
              log=lambda m: None, prebuild=True)
    assert built == []  # no lab model, nothing built
    run_sweep("demo", plan_runs("srt", None, "5"), tmp_path, [], runner=runner,
              log=lambda m: None)
    assert built == []  # an injected runner does not prebuild unless asked


def test_jobs_pin_one_gpu_each(tmp_path):
    runner = RecordingRunner()
    specs = plan_runs("srt", None, "0-3")
    run_sweep("demo", specs, tmp_path, [], runner=runner, jobs=2, gpus=["0", "1"],
              log=lambda m: None)
    devices = [launch.env["CUDA_VISIBLE_DEVICES"] for _, launch in runner.launches]
    assert sorted(set(devices)) == ["0", "1"]
    assert all("trainer.threads=1" not in argv for argv, _ in runner.launches)


def test_report_only_aggregates_without_training(tmp_path, capsys):
    import argparse

    for seed in (0, 1):
        write_run(tmp_path / f"srt-s{seed}", steps=2, preset="srt", seed=seed,
                  records=rows({0: 0.5, 2: 0.4 + 0.1 * seed}, [0.5, 0.6]))
    parser = argparse.ArgumentParser()
    configure_parser(parser)
    args = parser.parse_args(["demo", "--presets", "srt", "--seeds", "0-2", "-o", str(tmp_path),
                              "--report-only", "--report-to", str(tmp_path / "agg")])

    def never(*_: object) -> int:
        raise AssertionError("--report-only must not train")

    assert run(args, runner=never) == 0
    assert "left out: srt-s2" in capsys.readouterr().err
    summary = (tmp_path / "agg" / "summary.md").read_text()
    assert "| srt | 2 | 50.0 ± 0.0 | 50.0 ± 0.0 | 45.0 ± 7.1 | -5.0 ± 7.1 |" in summary
    assert (tmp_path / "agg" / "plots" / "val_accuracy.png").is_file()


def test_weight_drift_norms_and_final_checkpoint(tmp_path):
    import shutil

    import torch
    from safetensors.torch import save_file

    from mgrpo.report.drift import final_checkpoint, run_drift, weight_drift

    init = {"w": torch.zeros(2, 2), "b": torch.zeros(3), "n": torch.tensor([1, 2])}
    policy = {"w": torch.full((2, 2), 1.5), "b": torch.zeros(3), "n": torch.tensor([5, 5])}
    momentum = {"w": torch.full((2, 2), 0.5), "b": torch.zeros(3), "n": torch.tensor([1, 2])}
    save_file(init, str(tmp_path / "init.safetensors"))
    for step in (10, 20):
        ckpt = tmp_path / "run" / "checkpoints" / f"step-{step}"
        ckpt.mkdir(parents=True)
        save_file(policy, str(ckpt / "model.safetensors"))
        save_file(momentum, str(ckpt / "momentum.safetensors"))
    ckpt = final_checkpoint(tmp_path / "run")
    assert ckpt is not None and ckpt.name == "step-20"
    drift = weight_drift(ckpt, tmp_path / "init.safetensors")
    # integer tensors are ignored; |w| has 4 entries
    assert drift == pytest.approx({"policy_drift": 3.0, "momentum_drift": 1.0,
                                   "ratio": 1 / 3, "gap": 2.0})
    (ckpt / "momentum.safetensors").unlink()
    assert weight_drift(ckpt, tmp_path / "init.safetensors") is None  # no momentum model
    model_dir = tmp_path / "base"
    model_dir.mkdir()
    save_file(init, str(model_dir / "model.safetensors"))
    shutil.rmtree(tmp_path / "run" / "checkpoints" / "step-20")  # step-10 is now the last
    drift = run_drift(tmp_path / "run", {"model.name": str(model_dir)})
    assert drift is not None and drift["policy_drift"] == pytest.approx(3.0)
    assert run_drift(tmp_path / "run", {"model.name": "hub/id"}) is None


def test_lab_collapse_recipe_is_the_demo_at_the_study_settings():
    from mgrpo.config import config_to_dict, resolve_config

    study = ["optim.lr=2e-4", "trainer.max_steps=40", "trainer.eval_every=5",
             "trainer.save_every=10"]
    assert config_to_dict(resolve_config("lab-collapse")) == config_to_dict(
        resolve_config("demo", study)
    )


def test_a_lab_build_that_fails_names_the_model_and_shows_why():
    from mgrpo.report.sweep import build_lab_world

    with pytest.raises(RuntimeError, match=r"(?s)building lab model lab:nope failed.*nope"):
        build_lab_world("lab:nope", "avx2")
