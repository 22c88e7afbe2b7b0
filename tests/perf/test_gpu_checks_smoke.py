"""benchmarks/gpu_checks/ is not rotten: one check module (graphs) runs at smoke size on CPU
through the same entry point the shell uses, and its result merges into a summary.json of
the documented schema (`gpu_checks.summary.validate`); a check that is cut off, still
running or never started, and one that skips an assertion for an absent optional package,
are reported as such; the learning margins come out of the reference curves as stated."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
BENCH = REPO / "benchmarks"


@pytest.fixture(scope="module")
def gpu_checks():
    sys.path.insert(0, str(BENCH))
    try:
        import gpu_checks.common
        import gpu_checks.learning
        import gpu_checks.summary

        yield gpu_checks
    finally:
        sys.path.remove(str(BENCH))


def test_the_graphs_check_runs_at_smoke_size_and_its_summary_validates(tmp_path, gpu_checks):
    results, scratch = tmp_path / "results", tmp_path / "scratch"
    scratch.mkdir()
    env = dict(os.environ, DEVICE="cpu", SCRATCH=str(scratch), CHECK_RESULTS=str(results),
               OMP_NUM_THREADS="1",
               PYTHONPATH=os.pathsep.join([str(REPO / "src"), str(BENCH),
                                           os.environ.get("PYTHONPATH", "")]))
    done = subprocess.run([sys.executable, "-m", "gpu_checks.graphs"], env=env, cwd=REPO,
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert "PASS graphs/graphed_equals_eager_kept_workspace_x3" in done.stdout
    assert "PASS graphs/validation_keeps_the_workspace_rows" in done.stdout
    (results / "update.json").write_text(json.dumps({
        "name": "update", "status": "PASS", "seconds": 3.0, "device": "cpu", "smoke": True,
        "asserts": [{"name": "a", "ok": True, "value": 1, "limit": 1}], "figures": {},
        "error": None, "skipped": [{"name": "lora", "reason": "peft is not installed"}]}))
    status = tmp_path / "status"
    status.write_text("graphs running 0\ngraphs 0 12\nupdate 0 3\nlearning_paired 124 150\n"
                      "resume running 0\npaper_step skipped 0\n")
    summary = gpu_checks.summary.merge(status, results, 420)
    gpu_checks.summary.validate(summary)
    json.dumps(summary)
    by_name = {c["name"]: c for c in summary["checks"]}
    assert list(by_name) == ["graphs", "update", "learning_paired", "resume", "paper_step"]
    assert by_name["graphs"]["status"] == "PASS" and by_name["graphs"]["asserts"]
    assert by_name["update"]["status"] == "PASS"
    assert summary["skips"][0] == "update/lora: peft is not installed"
    assert by_name["learning_paired"]["status"] == "TIMEOUT"
    assert by_name["resume"]["status"] == "TIMEOUT" and "still running" in by_name["resume"]["error"]
    assert by_name["paper_step"]["status"] == "SKIP"
    assert not summary["passed"] and not summary["complete"]
    done = tmp_path / "status-done"  # finished, one check skipped only for want of peft
    done.write_text("graphs 0 12\nupdate 0 3\n")
    assert gpu_checks.summary.merge(done, results)["passed"]
    done.write_text("graphs 0 12\nupdate 0 3\nresume skipped 0\n")  # never started
    assert not gpu_checks.summary.merge(done, results)["passed"]
    gpu_checks.summary.write(summary, tmp_path / "summary.json")
    assert json.loads((tmp_path / "summary.json").read_text())["budget_seconds"] == 420


def test_skips_never_fail_a_check(tmp_path, monkeypatch, gpu_checks):
    monkeypatch.setenv("CHECK_RESULTS", str(tmp_path))
    Check = gpu_checks.common.Check
    both = Check("both")
    both.expect("x", True)
    both.skip("lora", "peft is not installed")
    assert both.finish() == 0
    only = Check("only")
    only.skip("lora", "peft is not installed")
    assert only.finish() == 0
    failed = Check("failed")
    failed.expect("x", False)
    failed.skip("lora", "peft is not installed")
    assert failed.finish() == 1
    statuses = {n: json.loads((tmp_path / f"{n}.json").read_text())["status"]
                for n in ("both", "only", "failed")}
    assert statuses == {"both": "PASS", "only": "SKIP", "failed": "FAIL"}


def test_the_learning_margins_come_from_the_reference_curves(gpu_checks):
    learning = gpu_checks.learning
    flat = [0.5, 0.6] * 20  # a control: no trend, per-step sd 0.0506
    rising = [0.5 + 0.01 * i for i in range(40)]
    runs = {
        "control-s0": {"reward": flat, "val": [[0, 50.0], [5, 52.0], [10, 48.0], [15, 50.0]]},
        "control-s1": {"reward": flat, "val": [[0, 40.0], [5, 42.0], [10, 38.0], [15, 40.0]]},
        "m-grpo-s0": {"reward": rising, "val": [[0, 50.0], [5, 50.0]]},
        "m-grpo-s1": {"reward": [r + 0.1 for r in rising], "val": [[0, 40.0], [5, 40.0]]},
        "grpo-s0": {"reward": flat, "val": [[0, 50.0], [5, 54.0], [10, 58.0], [15, 62.0]]},
        "grpo-s1": {"reward": flat, "val": [[0, 40.0], [5, 40.0], [10, 46.0], [15, 46.0]]},
    }
    m = learning.margins({"runs": runs})
    assert learning.WINDOW == 10  # reward means over the first and last 10 steps
    assert learning.reward_rise({"reward": rising}) == pytest.approx(0.30)
    assert learning.reward_rise({"reward": flat}) == pytest.approx(0.0)
    assert m["cpu_paired_reward_differences"] == pytest.approx([0.30, 0.30])
    assert m["reward_margin"] == pytest.approx(0.15)
    assert m["cpu_grpo_val_rises"] == pytest.approx([8.0, 4.0])  # last 3 points vs step 0
    assert m["val_margin"] == pytest.approx(2.0)
    sd = 0.05 * (40 / 39) ** 0.5  # the sample sd of the alternating control
    assert m["control_reward_band"] == pytest.approx(3.0 * sd * (2 / 10) ** 0.5)
    val_sd = (8 / 3) ** 0.5  # the sd of 50, 52, 48, 50 (and of 40, 42, 38, 40)
    assert m["control_val_band"] == pytest.approx(3.0 * val_sd * (1 + 1 / 3) ** 0.5)
