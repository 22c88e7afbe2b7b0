"""`mgrpo compare`: orchestration with an injected runner (the trainer is not needed)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import pytest
from report_synth import write_run

from mgrpo.cli.compare import configure_parser, run
from mgrpo.report.compare import (
    RunSpec,
    plan_runs,
    run_state,
    run_sweep,
    scaling_table,
    train_command,
)


def parse(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    configure_parser(parser)
    return parser.parse_args(argv)


class FakeTrainer:
    """Stands in for `mgrpo train`: parses the argv it is given and writes a synthetic run."""

    def __init__(self, steps: int = 30, fail: set[str] | None = None) -> None:
        self.calls: list[list[str]] = []
        self.steps = steps
        self.fail = fail or set()

    def __call__(self, argv: list[str], run_dir: Path, launch: object = None) -> int:
        self.calls.append(argv)
        assert argv[:4] == [sys.executable, "-m", "mgrpo", "train"]
        assert argv[argv.index("-o") + 1] == str(run_dir)
        kv = dict(a.split("=", 1) for a in argv if "=" in a)
        if run_dir.name in self.fail:
            run_dir.mkdir(parents=True, exist_ok=True)
            return 3
        preset, g, seed = (
            kv["algorithm.preset"],
            int(kv["algorithm.rollouts"]),
            int(kv.get("seed", 0)),
        )
        # srt collapses, m-grpo does not; larger G helps a little (a toy scaling law)
        write_run(
            run_dir,
            steps=self.steps,
            preset=preset,
            rollouts=g,
            seed=seed,
            collapse=preset == "srt",
            eval_results={"math500": {"avg@1": 0.3 + g / 100}},
        )
        return 0


def test_train_command_exact():
    spec = RunSpec("m-grpo", 16, 1)
    argv = train_command("demo", Path("out/m-grpo-G16-s1"), spec, ["trainer.max_steps=5"])
    assert argv == [
        sys.executable,
        "-m",
        "mgrpo",
        "train",
        "demo",
        "-o",
        "out/m-grpo-G16-s1",
        "algorithm.preset=m-grpo",
        "algorithm.rollouts=16",
        "seed=1",
        "trainer.max_steps=5",
    ]
    resumed = train_command("demo", Path("d"), spec, [], resume=True)
    assert resumed[6:8] == ["d", "--resume"]
    assert RunSpec("srt", None, None).overrides() == ["algorithm.preset=srt"]
    assert RunSpec("srt", None, None).dirname == "srt"


def test_plan_and_validation():
    specs = plan_runs("srt,m-grpo", "8,16", "0,1")
    assert [s.dirname for s in specs[:3]] == ["srt-G8-s0", "srt-G8-s1", "srt-G16-s0"]
    assert len(specs) == 8
    with pytest.raises(ValueError, match="unknown preset 'sft'; valid: .*m-grpo"):
        plan_runs("sft", None, None)
    with pytest.raises(ValueError, match="--rollouts: 1 must be >= 2"):
        plan_runs("srt", "1", None)
    with pytest.raises(ValueError, match="--seeds: 'x' is not an integer"):
        plan_runs("srt", None, "x")


def test_compare_runs_sweep_and_writes_report(tmp_path):
    fake = FakeTrainer()
    out = tmp_path / "cmp"
    args = parse(
        [
            "demo",
            "trainer.max_steps=30",
            "--presets",
            "srt,m-grpo",
            "--rollouts",
            "8,16",
            "--seeds",
            "0,1",
            "-o",
            str(out),
        ]
    )
    assert run(args, runner=fake) == 0
    assert len(fake.calls) == 8  # 2 presets x 2 G x 2 seeds
    assert all(c[-1] == "trainer.max_steps=30" for c in fake.calls)
    scaling = (out / "scaling.md").read_text()
    assert "| method | G | runs | val acc best (%) | val acc final (%) | math500 (%) |" in scaling
    assert "| srt | 8 | 2 |" in scaling and "| m-grpo | 16 | 2 |" in scaling
    assert "38.0 ± 0.0" in scaling  # math500 for G=8 (0.3 + 8/100) over 2 seeds
    summary = (out / "summary.md").read_text()
    assert "reward, last 10 steps" in summary and "reward at end" not in summary
    assert "`collapsed` is the verdict" in summary and "never decides the verdict" in summary
    page = (out / "report" / "report.html").read_text()
    assert "Scaling (rows: arm x G)" in page and page.count("data:image/png;base64,") >= 9
    assert "never decides the verdict" in page and "reward at the last step" in page
    assert "m-grpo G=16 seed=1" in page
    # second invocation: everything complete -> nothing re-run
    specs = plan_runs("srt,m-grpo", "8,16", "0,1")
    outcomes = run_sweep("demo", specs, out, ["trainer.max_steps=30"], runner=fake)
    assert [o.action for o in outcomes] == ["skipped"] * 8
    assert len(fake.calls) == 8


def test_resume_and_incomplete_and_failure(tmp_path):
    out = tmp_path / "cmp"
    # a run killed before its first checkpoint, one killed after one, one complete
    write_run(
        out / "srt-G8",
        steps=30,
        preset="srt",
        rollouts=8,
        records=[{"step": 1, "reward/mean": 0.1}],
    )
    write_run(
        out / "m-grpo-G8",
        steps=30,
        preset="m-grpo",
        rollouts=8,
        records=[{"step": s, "reward/mean": 0.1} for s in range(1, 11)],
    )
    (out / "m-grpo-G8" / "checkpoints" / "step-10").mkdir(parents=True)
    assert run_state(out / "srt-G8") == "incomplete"
    assert run_state(out / "m-grpo-G8") == "resumable"
    assert run_state(out / "nothing") == "missing"
    fake = FakeTrainer(fail={"m-grpo-G16"})
    args = parse(["demo", "--presets", "srt,m-grpo", "--rollouts", "8,16", "-o", str(out)])
    assert run(args, runner=fake) == 1  # one run failed -> exit 1, the rest still reported
    by_dir = {Path(c[c.index("-o") + 1]).name: c for c in fake.calls}
    assert "--resume" in by_dir["m-grpo-G8"] and "--resume" not in by_dir["srt-G8"]
    assert (out / "srt-G8.incomplete-1" / "metrics.jsonl").is_file()  # moved, not deleted
    assert run_state(out / "srt-G16") == "complete"
    # asking for more steps than a finished run has: resume it (its checkpoint exists)
    (out / "srt-G16" / "checkpoints" / "step-30").mkdir(parents=True)
    assert run_state(out / "srt-G16", max_steps=60) == "resumable"
    fake.calls.clear()
    outcomes = run_sweep(
        "demo", [RunSpec("srt", 16, None)], out, ["trainer.max_steps=60"], runner=fake
    )
    assert outcomes[0].action == "resumed" and "--resume" in fake.calls[0]
    scaling = (out / "scaling.md").read_text()
    assert "| m-grpo | 16 |" not in scaling and "| srt | 16 | 1 |" in scaling


def test_dry_run_and_override_conflicts(tmp_path, capsys):
    args = parse(["demo", "--presets", "srt", "--seeds", "3", "-o", str(tmp_path), "--dry-run"])
    assert run(args, runner=FakeTrainer()) == 0
    line = capsys.readouterr().out.strip()
    assert line.endswith(f"train demo -o {tmp_path / 'srt-s3'} algorithm.preset=srt seed=3")
    bad = parse(["demo", "seed=4", "--presets", "srt", "--seeds", "3", "-o", str(tmp_path)])
    assert run(bad, runner=FakeTrainer()) == 2
    assert "sets seed, which compare sweeps" in capsys.readouterr().err
    bad = parse(["demo", "nonsense", "--presets", "srt", "-o", str(tmp_path)])
    assert run(bad, runner=FakeTrainer()) == 2


def test_cli_overrides_after_options(tmp_path, capsys):
    from mgrpo.cli import main

    code = main(
        [
            "compare",
            "demo",
            "--presets",
            "srt,m-grpo",
            "--rollouts",
            "8",
            "-o",
            str(tmp_path),
            "--dry-run",
            "trainer.max_steps=5",
            "data.train=x.jsonl",
        ]
    )
    assert code == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert len(lines) == 2
    assert lines[1].endswith(
        "algorithm.preset=m-grpo algorithm.rollouts=8 trainer.max_steps=5 data.train=x.jsonl"
    )
    (tmp_path / "srt-G8").mkdir()  # an empty directory counts as not started
    assert run_state(tmp_path / "srt-G8") == "missing"


def test_scaling_table_without_val_or_evals(tmp_path):
    a = write_run(tmp_path / "a", steps=10, preset="srt", rollouts=8, val_every=0)
    table = scaling_table([a])
    assert table.headers == ["method", "G", "runs", "val acc best (%)", "val acc final (%)"]
    assert table.rows == [["srt", "8", "1", "—", "—"]]
