"""metrics.jsonl / config.yaml / results.json reading, including damaged files."""

from __future__ import annotations

import json

import numpy as np
import pytest
from report_synth import synthetic_records, write_run

from mgrpo.report.runs import (
    MetricsError,
    flatten_config,
    load_run,
    load_runs,
    read_eval_results,
    read_metrics,
)


def test_truncated_last_line_is_ignored_and_reported(tmp_path):
    run = write_run(tmp_path / "run", steps=20)
    path = run / "metrics.jsonl"
    full = path.read_text()
    # killed mid-write: half of a 21st record, no newline
    path.write_text(full + json.dumps({"step": 21, "reward/mean": 0.5})[:15])
    log = read_metrics(path)
    assert len(log.records) == 20
    assert log.last_step == 20
    assert log.partial_line == 21
    assert any("truncated" in w and ":21:" in w for w in log.warnings)
    # the run loads and the warning travels to the run's notes
    data = load_run(run)
    assert any("truncated" in w for w in data.warnings)


def test_truncated_line_with_trailing_blank_lines(tmp_path):
    path = tmp_path / "metrics.jsonl"
    path.write_text('{"step": 1, "reward/mean": 0.1}\n{"step": 2, "rew\n\n')
    log = read_metrics(path)
    assert [r["step"] for r in log.records] == [1]
    assert log.partial_line == 2


def test_complete_last_line_without_newline_is_kept(tmp_path):
    path = tmp_path / "metrics.jsonl"
    path.write_text('{"step": 1, "reward/mean": 0.1}\n{"step": 2, "reward/mean": 0.2}')
    log = read_metrics(path)
    assert log.last_step == 2 and log.partial_line is None


def test_corrupt_middle_line_names_file_and_line(tmp_path):
    path = tmp_path / "metrics.jsonl"
    path.write_text('{"step": 1}\n{"step": 2, oops}\n{"step": 3}\n')
    with pytest.raises(MetricsError, match=r"metrics.jsonl:2: not valid JSON"):
        read_metrics(path)
    log = read_metrics(path, lenient=True)
    assert [r["step"] for r in log.records] == [1, 3]
    assert any(":2:" in w for w in log.warnings)


def test_record_without_step_and_missing_file(tmp_path):
    path = tmp_path / "metrics.jsonl"
    path.write_text('{"step": 1}\n{"reward/mean": 0.3}\n')
    with pytest.raises(MetricsError, match=r":2: record has no integer 'step'"):
        read_metrics(path)
    with pytest.raises(MetricsError, match="not found"):
        read_metrics(tmp_path / "nope.jsonl")


def test_duplicate_steps_keep_last_record(tmp_path):
    path = tmp_path / "metrics.jsonl"
    lines = [
        {"step": 1, "x": 1.0},
        {"step": 2, "x": 2.0},
        {"step": 2, "x": 20.0},
        {"step": 3, "x": 3.0},
    ]
    path.write_text("".join(json.dumps(r) + "\n" for r in lines))
    log = read_metrics(path)
    steps, xs = log.series("x")
    assert steps.tolist() == [1, 2, 3] and xs.tolist() == [1.0, 20.0, 3.0]
    assert log.duplicate_steps == 1


def test_series_skips_sparse_non_numeric_and_nan(tmp_path):
    path = tmp_path / "metrics.jsonl"
    path.write_text(
        '{"step": 1, "val/accuracy": 0.5, "alarm/reason": "x"}\n'
        '{"step": 2, "val/accuracy": NaN}\n{"step": 3}\n{"step": 4, "val/accuracy": 0.7}\n'
    )
    log = read_metrics(path)
    steps, vals = log.series("val/accuracy")
    assert steps.tolist() == [1, 4]
    np.testing.assert_allclose(vals, [0.5, 0.7])
    assert log.series("alarm/reason")[0].size == 0
    assert log.has("val/accuracy") and not log.has("alarm/reason")


def test_config_flatten_and_run_names(tmp_path):
    assert flatten_config({"a": {"b": 1, "c": {"d": [1, 2]}}, "e": None, "f": {}}) == {
        "a.b": 1,
        "a.c.d": [1, 2],
        "e": None,
        "f": {},
    }
    a = write_run(tmp_path / "a", steps=5, preset="srt", rollouts=8, seed=1)
    b = write_run(tmp_path / "b", steps=5, preset="srt", rollouts=8, seed=1)
    c = write_run(tmp_path / "c", steps=5, preset="m-grpo", rollouts=32, seed=0)
    runs = load_runs([a, b, c])
    assert runs[2].name == "m-grpo G=32 seed=0"
    assert runs[0].name == "srt G=8 seed=1 (a)" and runs[1].name == "srt G=8 seed=1 (b)"
    (c / "config.yaml").unlink()
    run = load_run(c)
    assert run.name == "c" and any("no config.yaml" in w for w in run.warnings)


def test_bad_config_yaml(tmp_path):
    run = write_run(tmp_path / "r", steps=3)
    (run / "config.yaml").write_text("- just\n- a list\n")
    with pytest.raises(MetricsError, match="config.yaml: expected a mapping"):
        load_run(run)


def test_eval_results_both_shapes(tmp_path):
    nested = {
        "benchmarks": {"math500": {"n_problems": 5, "avg@2": 0.4, "pass@1": 0.4, "pass@2": 0.6}},
        "settings": {"temperature": 0.8},
    }
    p = tmp_path / "eval" / "results.json"
    p.parent.mkdir()
    p.write_text(json.dumps(nested))
    ev = read_eval_results(p)
    assert list(ev.benchmarks) == ["math500"]
    assert ev.primary("math500") == ("avg@2", 0.4)
    flat = {"aime24": {"accuracy": 0.1, "n_problems": 30}, "model": "x"}
    p.write_text(json.dumps(flat))
    ev = read_eval_results(p)
    assert list(ev.benchmarks) == ["aime24"] and ev.primary("aime24") == ("accuracy", 0.1)
    assert ev.primary("missing") is None
    p.write_text(json.dumps({"benchmarks": {"aime24": {"avg@k": 0.2, "samples": 8}}}))
    assert read_eval_results(p).primary("aime24") == ("avg@8", 0.2)
    p.write_text("{broken")
    with pytest.raises(MetricsError, match="results.json:1: invalid JSON"):
        read_eval_results(p)


def test_load_run_finds_eval_dirs(tmp_path):
    run = write_run(tmp_path / "r", steps=3, eval_results={"math500": {"avg@1": 0.25}})
    (run / "eval-step-3").mkdir()
    (run / "eval-step-3" / "results.json").write_text(json.dumps({"gsm8k": {"avg@1": 0.5}}))
    data = load_run(run)
    assert [e.name for e in data.evals] == ["eval", "eval-step-3"]
    assert synthetic_records(3)[0]["step"] == 1


@pytest.mark.parametrize("suffix", [".xz", ".gz"])
def test_a_compressed_metrics_file_reads_as_the_plain_one(tmp_path, suffix):
    import gzip
    import lzma

    from mgrpo.report.sweep import run_state

    run = write_run(tmp_path / "run", steps=12)
    plain = run / "metrics.jsonl"
    expected = load_run(run)
    packed = plain.with_name(plain.name + suffix)
    packed.write_bytes((lzma.compress if suffix == ".xz" else gzip.compress)(plain.read_bytes()))
    plain.unlink()
    data = load_run(run)
    assert data.metrics.path == packed
    assert data.metrics.records == expected.metrics.records
    assert run_state(run) == "complete"  # a sweep skips a stored run


def test_a_damaged_compressed_metrics_file_names_the_file(tmp_path):
    path = tmp_path / "metrics.jsonl.xz"
    path.write_bytes(b"not xz at all")
    with pytest.raises(MetricsError, match=r"metrics.jsonl.xz: not a valid .xz file"):
        read_metrics(path)
