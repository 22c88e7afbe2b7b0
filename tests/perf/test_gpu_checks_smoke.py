"""benchmarks/gpu_checks/ is not rotten: one check module (graphs) runs at smoke size on CPU
through the same entry point the shell uses, and its result merges into a summary.json of
the documented schema (`gpu_checks.summary.validate`)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
BENCH = REPO / "benchmarks"


def test_the_graphs_check_runs_at_smoke_size_and_its_summary_validates(tmp_path) -> None:
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
    status = tmp_path / "status"
    status.write_text("graphs 0 12\nlearning 124 240\n")  # a finished and a timed-out check
    sys.path.insert(0, str(BENCH))
    try:
        from gpu_checks.summary import merge, validate
    finally:
        sys.path.remove(str(BENCH))
    summary = merge(status, results)
    validate(summary)
    json.dumps(summary)
    graphs, learning = summary["checks"]
    assert graphs["status"] == "PASS" and graphs["asserts"] and graphs["smoke"]
    assert learning["status"] == "TIMEOUT" and not summary["passed"]
