"""`mgrpo eval --list` without a model; standard errors in results.json; the lm-eval-layout
results file read back by lm-evaluation-harness's own table writer."""

from __future__ import annotations

import json
import math
import statistics
from pathlib import Path

import pytest

from mgrpo.cli import main
from mgrpo.data.benchmarks import BENCHMARKS


def test_list_needs_no_model_and_shows_what_each_benchmark_needs(capsys: pytest.CaptureFixture) -> None:
    assert main(["eval", "--list"]) == 0
    listing = capsys.readouterr().out
    for name, bench in BENCHMARKS.items():
        line = next(x for x in listing.splitlines() if x.startswith(name + " "))
        assert bench.kind in line and str(bench.paper_samples) in line and bench.description in line
        if bench.source == "user":
            assert f"$MGRPO_{name.upper()}_FILE" in listing and bench.columns in listing
            assert bench.hub_id in listing
        else:
            assert "vendored" in line


def test_no_model_without_list_is_one_clear_error(capsys: pytest.CaptureFixture) -> None:
    assert main(["eval", "-b", "math500"]) == 2
    err = capsys.readouterr().err.strip()
    assert err == "mgrpo eval: error: the following arguments are required: model (or --list to see the benchmarks)"


def test_bad_chat_template_kwargs_is_one_clear_error(capsys: pytest.CaptureFixture) -> None:
    assert main(["eval", "tiny", "--chat-template-kwargs", "[1]"]) == 2
    assert "--chat-template-kwargs: expected a JSON object" in capsys.readouterr().err


@pytest.fixture(scope="module")
def eval_out(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("eval") / "out"
    rc = main(["eval", "tiny", "-b", "math500,amc23", "--limit", "4", "--samples", "3",
               "--max-new-tokens", "4", "--engine", "hf", "-o", str(out)])
    assert rc == 0
    return out


def test_every_accuracy_has_its_standard_error(eval_out: Path) -> None:
    results = json.loads((eval_out / "results.json").read_text())["benchmarks"]
    for name, r in results.items():
        rows = [json.loads(x) for x in (eval_out / "samples" / f"{name}.jsonl").read_text().splitlines()]
        per_problem: dict[str, list[bool]] = {}
        for row in rows:
            per_problem.setdefault(row["problem_id"], []).append(row["correct"])
        means = [sum(v) / len(v) for v in per_problem.values()]
        assert r["avg@k_stderr"] == pytest.approx(statistics.stdev(means) / math.sqrt(len(means)))
        for key in ("accuracy", "avg@k", "pass@1", "pass@2", "pass@3", "pass@k", "maj@k"):
            assert isinstance(r[f"{key}_stderr"], float) and r[f"{key}_stderr"] >= 0, key


def test_lm_eval_layout_is_read_by_lm_eval(eval_out: Path) -> None:
    utils = pytest.importorskip("lm_eval.utils", reason="lm-eval not installed (pip install 'mgrpo[lm-eval]')")
    ours = json.loads((eval_out / "results.json").read_text())["benchmarks"]
    data = json.loads((eval_out / "lm_eval_results.json").read_text())
    table = utils.make_table(data)
    for name, r in ours.items():
        block = data["results"][name]
        assert block["exact_match,none"] == r["avg@k"]
        assert block["exact_match_stderr,none"] == r["avg@k_stderr"]
        assert block["pass@3,none"] == r["pass@3"] and block["maj@k_stderr,none"] == r["maj@k_stderr"]
        assert data["n-samples"][name]["effective"] == 4 and data["configs"][name]["repeats"] == 3
        cells, task = {}, ""  # lm-eval's table: |task|version|filter|n-shot|metric|dir|value|±|stderr|
        for line in table.splitlines():
            parts = [p.strip() for p in line.strip("|").split("|")]
            if len(parts) == 9 and parts[4] not in ("Metric", "") and not parts[4].startswith("-"):
                task = parts[0] or task
                cells[(task, parts[4])] = (float(parts[6]), float(parts[8]))
        assert cells[(name, "exact_match")] == pytest.approx((r["avg@k"], r["avg@k_stderr"]), abs=5e-5)
        assert cells[(name, "pass@3")] == pytest.approx((r["pass@3"], r["pass@3_stderr"]), abs=5e-5)
