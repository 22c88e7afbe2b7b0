"""URLVR's Model Collapse Step from metrics: the reward-accuracy bound against TTRL's
reward_accuracy computed rollout by rollout, the first step below the threshold, and the
column of `mgrpo report`."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mgrpo.report.build import build_report
from mgrpo.report.model_collapse import (
    model_collapse_step,
    reward_accuracy_bound,
    reward_accuracy_bounds,
)
from mgrpo.report.runs import RunMetrics

FAST = settings(deadline=None, max_examples=60, derandomize=True)


def _vote_step(groups: list[list[str]], truth: str) -> tuple[float, float, float]:
    """One step of vote-rewarded rollouts, rollout by rollout: (hit rate, accuracy, TTRL's
    reward_accuracy = share whose 0/1 vote reward equals its 0/1 ground-truth reward)."""
    rewards, correct = [], []
    for answers in groups:
        label = Counter(answers).most_common(1)[0][0]  # ties: the first counted, as TTRL's
        for answer in answers:
            rewards.append(1.0 if answer == label else 0.0)
            correct.append(1.0 if answer == truth else 0.0)
    n = len(rewards)
    agree = sum(r == c for r, c in zip(rewards, correct, strict=True))
    return sum(rewards) / n, sum(correct) / n, agree / n


GROUPS = st.lists(st.lists(st.sampled_from("ABCD"), min_size=2, max_size=8), min_size=1,
                  max_size=6)


@FAST
@given(steps=st.lists(GROUPS, min_size=1, max_size=5))
def test_bounds_hold_ttrl_reward_accuracy(steps):
    records, exact = [], []
    for i, groups in enumerate(steps, start=1):
        hit, acc, ra = _vote_step(groups, truth="A")
        records.append({"step": i, "reward/hit_rate": hit, "policy/accuracy": acc})
        exact.append(ra)
    got_steps, lower, upper = reward_accuracy_bounds(RunMetrics(Path("m"), records))
    assert list(got_steps) == list(range(1, len(steps) + 1))
    assert list(upper) == list(reward_accuracy_bound(RunMetrics(Path("m"), records))[1])
    for low, high, ra in zip(lower, upper, exact, strict=True):
        assert low - 1e-12 <= ra <= high + 1e-12


@FAST
@given(steps=st.lists(GROUPS, min_size=1, max_size=5))
def test_bound_is_exact_when_right_answers_win_their_groups(steps):
    """Every right answer sits in a group whose label is right: RA+ == RA."""
    for groups in steps:
        for g in groups:  # make "A" the label of every group that holds an "A"
            if "A" in g:
                g.extend(["A"] * len(g))
    records, exact = [], []
    for i, groups in enumerate(steps, start=1):
        hit, acc, ra = _vote_step(groups, truth="A")
        records.append({"step": i, "reward/hit_rate": hit, "policy/accuracy": acc})
        exact.append(ra)
    _, bound = reward_accuracy_bound(RunMetrics(Path("m"), records))
    assert list(bound) == pytest.approx(exact, abs=1e-12)


def test_first_step_below_the_threshold():
    # a run that collapses onto one wrong answer: every rollout rewarded, none right
    rows = [{"step": 0, "val/accuracy": 0.4}]  # the step-0 row has neither metric
    rows += [{"step": s, "reward/hit_rate": h, "policy/accuracy": a}
             for s, (h, a) in enumerate([(0.6, 0.4), (0.8, 0.2), (0.995, 0.0), (1.0, 0.0)], 1)]
    reading = model_collapse_step(RunMetrics(Path("m"), rows))
    assert reading.step == 3 and reading.steps_read == 4
    assert reading.lowest == 0.0 and reading.lowest_step == 4
    assert "step 3" in reading.describe()
    looser = model_collapse_step(RunMetrics(Path("m"), rows), threshold=0.5)
    assert looser.step == 2
    healthy = model_collapse_step(RunMetrics(Path("m"), rows[:3]))
    assert healthy.step is None and healthy.lowest == pytest.approx(0.4)
    assert "not reached in 2 steps" in healthy.describe()


def test_runs_before_the_hit_rate_read_the_mean_reward():
    rows = [{"step": 1, "reward/mean": 0.6, "policy/accuracy": 0.4},
            {"step": 2, "reward/mean": 1.0, "policy/accuracy": 0.0}]
    assert model_collapse_step(RunMetrics(Path("m"), rows)).step == 2
    rows[0]["reward/hit_rate"] = 0.5  # logged: the hit rate wins where there is one
    _, bound = reward_accuracy_bound(RunMetrics(Path("m"), rows))
    assert list(bound) == pytest.approx([0.9])


def test_unlabelled_runs_have_no_reading():
    rows = [{"step": 1, "reward/hit_rate": 0.9, "reward/mean": 0.9},
            {"step": 2, "reward/hit_rate": 1.0, "reward/mean": 1.0}]
    reading = model_collapse_step(RunMetrics(Path("m"), rows))
    assert reading.step is None and reading.steps_read == 0
    assert reading.describe().startswith("n/a")
    with pytest.raises(ValueError, match="threshold"):
        model_collapse_step(RunMetrics(Path("m"), rows), threshold=0.0)


def test_report_shows_it_beside_the_alarm(tmp_path):
    run = tmp_path / "run"
    run.mkdir()
    rows = [{"step": s, "reward/mean": h, "reward/hit_rate": h, "policy/accuracy": a,
             "entropy/policy": 0.5, "label/vote_share": 0.8, "response/length_mean": 20.0}
            for s, (h, a) in enumerate([(0.6, 0.4), (0.995, 0.0), (1.0, 0.0)], 1)]
    (run / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    build_report([run], tmp_path / "out")
    summary = (tmp_path / "out" / "summary.md").read_text()
    header = next(line for line in summary.splitlines() if line.startswith("| run |"))
    cells = header.split("|")
    assert cells.index(" model collapse step (URLVR: reward accuracy < 0.01) ") == \
        cells.index(" collapse alarm (online warning) ") + 1
    assert "step 2 (RA+ < 0.01)" in summary
