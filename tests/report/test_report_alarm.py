"""CollapseAlarm on synthetic metric streams that must and must not raise it."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
from report_synth import synthetic_records

from mgrpo.train.logs.alarm import ALARM_KEY, REASON_KEY, CollapseAlarm, CollapseAlarmConfig, replay


def stream(
    n: int,
    *,
    seed: int = 0,
    entropy=None,
    length=None,
    vote=None,
    reward=None,
    val=None,
    val_every: int = 10,
    noise: float = 1.0,
) -> list[dict]:
    """Metrics from callables of t in [0, 1] plus seeded noise."""
    rng = np.random.default_rng(seed)
    entropy = entropy or (lambda t: 0.8)
    length = length or (lambda t: 200.0)
    vote = vote or (lambda t: 0.6)
    reward = reward or (lambda t: 0.4)
    out = []
    for step in range(1, n + 1):
        t = step / n
        r = {
            "step": step,
            "entropy/policy": max(entropy(t) + noise * rng.normal(0, 0.05), 1e-4),
            "response/length_mean": max(length(t) + noise * rng.normal(0, 12), 1.0),
            "label/vote_share": float(np.clip(vote(t) + noise * rng.normal(0, 0.03), 0, 1)),
            "reward/mean": float(np.clip(reward(t) + noise * rng.normal(0, 0.05), 0, 1)),
        }
        if val is not None and step % val_every == 0:
            r["val/accuracy"] = float(np.clip(val(t) + noise * rng.normal(0, 0.01), 0, 1))
        out.append(r)
    return out


def fired_rules(records, config=None) -> set[str]:
    return {rule for state in replay(records, config) for rule in state.rules}


@pytest.mark.parametrize("seed", [0, 1, 2, 3])
def test_healthy_noisy_runs_stay_quiet(seed):
    # the shared synthetic healthy run: entropy -37%, length -20%, vote 0.55 -> 0.8, val rising
    assert replay(synthetic_records(400, seed=seed)) == []
    # a noisier one: entropy halves, vote share saturates near 1 but length holds, val plateaus
    records = stream(
        400,
        seed=seed,
        noise=2.0,
        entropy=lambda t: 0.8 - 0.4 * t,
        vote=lambda t: min(0.6 + 0.5 * t, 1.0),
        length=lambda t: 200 - 60 * t,
        reward=lambda t: 0.3 + 0.5 * t,
        val=lambda t: 0.3 + 0.2 * min(t, 0.5),
    )
    assert replay(records) == []


def test_entropy_collapse_raises_once_with_reason():
    records = stream(200, entropy=lambda t: 0.8 * math.exp(-6 * t) + 0.01, noise=0.2)
    alarm = CollapseAlarm()
    states = [(r["step"], alarm.update(r)) for r in records]
    fired = [(step, s) for step, s in states if s is not None]
    assert fired, "entropy collapse must raise the alarm"
    first_step, first = fired[0]
    # e^{-6t} < 0.2 from t ~ 0.27, i.e. step ~54; smoothing + patience delay it a little
    assert 50 <= first_step <= 75
    assert first.first and all(not s.first for _, s in fired[1:])
    assert first.rules == ("entropy",)
    assert "entropy" in first.reason and "initial value" in first.reason
    assert first.as_metrics() == {ALARM_KEY: 1, REASON_KEY: first.reason}
    assert alarm.first_step == first_step
    assert alarm.fired_steps == len(fired)
    assert 0.6 < alarm.initial_values["entropy/policy"] < 0.8


def test_length_collapse_with_unanimous_vote_raises():
    records = stream(
        200,
        vote=lambda t: min(0.6 + 1.2 * t, 1.0),
        length=lambda t: 200.0 if t < 0.3 else max(200.0 - 500 * (t - 0.3), 12.0),
        noise=0.3,
    )
    assert fired_rules(records) == {"length"}


def test_unanimous_vote_alone_or_short_answers_alone_stay_quiet():
    assert replay(stream(200, vote=lambda t: 1.0, noise=0.3)) == []
    short = stream(200, vote=lambda t: 0.6, length=lambda t: max(200.0 - 500 * t, 12.0), noise=0.3)
    assert replay(short) == []


def test_reward_rising_while_val_falls_raises_divergence():
    records = stream(
        300,
        reward=lambda t: 0.3 + 0.6 * t,
        val=lambda t: 0.3 + 0.4 * t if t < 0.4 else 0.46 - 0.5 * (t - 0.4),
        noise=0.5,
    )
    states = replay(records)
    assert {rule for s in states for rule in s.rules} == {"divergence"}
    assert "val accuracy" in states[0].reason and "fell" in states[0].reason
    # fires only after the peak (step 120) once val is > 0.05 below it
    assert states[0].step > 120


def test_val_falling_with_flat_reward_stays_quiet():
    records = stream(300, reward=lambda t: 0.5, val=lambda t: 0.5 - 0.3 * t, noise=0.5)
    assert replay(records) == []


def test_single_dip_does_not_fire_because_of_patience():
    records = stream(100, noise=0.0)
    records[50]["entropy/policy"] = 0.0  # one bad step
    records[51]["entropy/policy"] = 0.0
    cfg = CollapseAlarmConfig(smoothing=0.0, patience=3)
    assert replay(records, cfg) == []
    records[52]["entropy/policy"] = 0.0
    assert [s.step for s in replay(records, cfg)] == [53]


def test_missing_and_non_finite_signals_are_skipped():
    alarm = CollapseAlarm()
    assert alarm.update({}) is None
    assert alarm.update({"step": 1, "entropy/policy": float("nan"), "reward/mean": None}) is None
    assert alarm.update({"step": 2, "alarm/reason": "text", "entropy/policy": "x"}) is None


def test_nothing_fires_during_warmup():
    cfg = CollapseAlarmConfig(warmup_steps=20, patience=1, smoothing=0.0)
    records = stream(19, entropy=lambda t: 0.8 if t < 0.5 else 0.001, noise=0.0)
    assert replay(records, cfg) == []


def test_state_dict_resume_is_exact():
    records = stream(
        200,
        entropy=lambda t: 0.8 * math.exp(-6 * t) + 0.01,
        seed=5,
        reward=lambda t: 0.3 + 0.6 * t,
        val=lambda t: 0.3 + 0.4 * t if t < 0.4 else 0.46 - 0.5 * (t - 0.4),
    )
    straight = CollapseAlarm()
    expected = [straight.update(r) for r in records]
    first = CollapseAlarm()
    got = [first.update(r) for r in records[:90]]
    state = json.loads(json.dumps(first.state_dict()))  # must survive JSON (checkpoint)
    second = CollapseAlarm()
    second.load_state_dict(state)
    got += [second.update(r) for r in records[90:]]
    assert got == expected
    other = CollapseAlarm(CollapseAlarmConfig(patience=5))
    with pytest.raises(ValueError, match="thresholds differ"):
        other.load_state_dict(state)


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("warmup_steps", 0),
        ("patience", 0),
        ("smoothing", 1.0),
        ("entropy_fraction", 0.0),
        ("entropy_fraction", 1.5),
        ("vote_share_threshold", 0.0),
        ("length_fraction", 1.0),
        ("val_drop", -0.1),
        ("reward_rise", float("nan")),
        ("warmup_steps", 2.5),
    ],
)
def test_config_validation_names_the_field(field, value):
    with pytest.raises(ValueError, match=f"diagnostics.alarm.{field}"):
        CollapseAlarmConfig(**{field: value})


def test_quiet_metrics_and_defaults():
    assert CollapseAlarm.quiet_metrics() == {ALARM_KEY: 0}
    cfg = CollapseAlarmConfig()
    assert (cfg.entropy_fraction, cfg.vote_share_threshold, cfg.length_fraction) == (0.2, 0.95, 0.5)
