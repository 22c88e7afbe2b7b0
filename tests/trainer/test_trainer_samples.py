"""samples.jsonl writer: record layout, every K-th step, atomic appends, resume truncation
without duplicates, partial last lines."""

from __future__ import annotations

import json

import pytest

from mgrpo.train.logs.samples import SamplesWriter, read_samples, sample_records
from mgrpo.train.run.run_dir import SAMPLES_FILE


def _records(step: int, B: int = 2):
    return sample_records(
        step, [f"q{b}" for b in range(B)], ["3", None][:B], ["3", "4"][:B],
        texts=[["a \\boxed{3}", "b", "c \\boxed{3}"]] * B,
        answers=[["3", None, "3"]] * B,
        entropies=[[0.5, 1.5, float("nan")]] * B,
        kept=[[True, False, True]] * B,
        rewards=[[1.0, 0.0]] * B,
        n_policy=2,
    )


def test_record_layout_pool_order_and_sources():
    rec = _records(4)[0]
    line = json.loads(rec.to_json())
    assert line["step"] == 4 and line["prompt"] == "q0" and line["label"] == "3"
    assert line["truth"] == "3"
    assert [r["source"] for r in line["rollouts"]] == ["policy", "policy", "momentum"]
    assert [r["reward"] for r in line["rollouts"]] == [1.0, 0.0, None]  # momentum: vote only
    assert [r["kept"] for r in line["rollouts"]] == [True, False, True]
    assert line["rollouts"][2]["entropy"] is None  # NaN is not JSON
    assert set(line["rollouts"][0]) == {"source", "text", "answer", "reward", "entropy", "kept"}


def test_every_kth_step_and_no_duplicates(tmp_path):
    w = SamplesWriter(tmp_path, every=2)
    for step in range(1, 7):
        if w.due(step):
            w.write(_records(step))
    w.write(_records(6))  # the same step again: ignored
    steps = [r["step"] for r in read_samples(tmp_path / SAMPLES_FILE)]
    assert steps == [2, 2, 4, 4, 6, 6]
    assert not SamplesWriter(tmp_path, every=0).due(8)


def test_resume_drops_later_steps_and_partial_line(tmp_path):
    w = SamplesWriter(tmp_path, every=1)
    for step in (1, 2, 3):
        w.write(_records(step))
    with open(tmp_path / SAMPLES_FILE, "a", encoding="utf-8") as fh:
        fh.write('{"step": 4, "prompt": "cut')  # killed mid-line
    assert [r["step"] for r in read_samples(tmp_path / SAMPLES_FILE)] == [1, 1, 2, 2, 3, 3]
    resumed = SamplesWriter(tmp_path, every=1)  # resuming from the step-2 checkpoint
    resumed.truncate_after(2)
    assert not resumed.due(2) and resumed.due(3)
    resumed.write(_records(3))
    resumed.write(_records(4))
    lines = (tmp_path / SAMPLES_FILE).read_text().splitlines()
    assert [json.loads(x)["step"] for x in lines] == [1, 1, 2, 2, 3, 3, 4, 4]


def test_bad_inputs(tmp_path):
    with pytest.raises(ValueError, match="log_samples_every"):
        SamplesWriter(tmp_path, every=-1)
    with pytest.raises(ValueError, match="one step"):
        SamplesWriter(tmp_path, every=1).write(_records(1) + _records(2))
    with pytest.raises(ValueError, match="labels"):
        sample_records(1, ["q"], [], [None], [[]], [[]], [[]], [[]], [[]], 0)
