"""The collapse alarm's divergence rule against the untrained policy's validation (step-0 row).

The streams are the training rewards and validation accuracies of two lab-world runs
(``mgrpo compare demo --presets srt,m-grpo optim.lr=2e-4 trainer.max_steps=40
trainer.eval_every=10 trainer.threads=1``, seed 0): srt's accuracy fell from 56.2% before
training to 47.5% by its first validation at step 10 and stayed there while its reward rose
from ~0.62 to ~0.85. Seen without the step-0 point, step 10 was the best and nothing fell.
"""

from __future__ import annotations

import pytest

from mgrpo.config import ConfigError, resolve_config
from mgrpo.train.logs.alarm import CollapseAlarm, CollapseAlarmConfig, replay

# srt, optim.lr=2e-4, seed 0: reward/mean at steps 1..40
SRT_REWARDS = [
    0.594, 0.672, 0.648, 0.609, 0.625, 0.594, 0.812, 0.648, 0.766, 0.43,
    0.648, 0.711, 0.602, 0.742, 0.781, 0.664, 0.672, 0.805, 0.82, 0.82,
    0.727, 0.758, 0.938, 0.836, 0.82, 0.844, 0.836, 0.75, 0.695, 0.781,
    0.789, 0.867, 0.945, 0.914, 0.836, 0.852, 0.781, 0.852, 0.859, 0.898,
]  # fmt: skip
SRT_VAL = {0: 0.562, 10: 0.475, 20: 0.443, 30: 0.473, 40: 0.477}

# m-grpo, recipe lab-collapse, seed 3 (docs/lab-study.md): accuracy 55.3% -> 40.0% by step 15
# and no recovery, while the smoothed reward rose about 0.07 over its initial median
MGRPO_REWARDS = [
    0.76, 0.594, 0.51, 0.667, 0.479, 0.708, 0.521, 0.667, 0.677, 0.656,
    0.677, 0.531, 0.615, 0.667, 0.635, 0.531, 0.75, 0.75, 0.583, 0.833,
    0.792, 0.792, 0.646, 0.75, 0.729, 0.521, 0.615, 0.75, 0.698, 0.677,
    0.781, 0.812, 0.896, 0.76, 0.812, 0.812, 0.812, 0.792, 0.729, 0.688,
]  # fmt: skip
MGRPO_VAL = {0: 0.553, 5: 0.521, 10: 0.461, 15: 0.4, 20: 0.414, 25: 0.42, 30: 0.424, 35: 0.422,
             40: 0.424}


def records(rewards: list[float], val: dict[int, float], *, step0_row: bool) -> list[dict]:
    out: list[dict] = [{"step": 0, "val/accuracy": val[0]}] if step0_row else []
    for step, reward in enumerate(rewards, 1):
        row = {"step": step, "reward/mean": reward}
        if step in val:
            row["val/accuracy"] = val[step]
        out.append(row)
    return out


def test_collapse_from_the_start_fires_once_step0_validation_is_seen():
    states = replay(records(SRT_REWARDS, SRT_VAL, step0_row=True))
    assert states, "srt fell 8.5 points below its step-0 accuracy while reward rose: must fire"
    assert states[0].rules == ("divergence",)
    assert states[0].step == 30  # two validation points (20, 30) past the margins
    assert "below its best 0.562" in states[0].reason


def test_default_reward_margin_catches_a_collapse_with_a_modest_reward_rise():
    rows = records(MGRPO_REWARDS, MGRPO_VAL, step0_row=True)
    states = replay(rows)
    assert states and states[0].rules == ("divergence",) and states[0].step == 40
    assert replay(rows, CollapseAlarmConfig(reward_rise=0.1)) == []  # a 0.1 margin misses it


def test_without_step0_row_the_first_validation_is_the_best():
    # the trainer logs the step-0 row; a log without it cannot show this collapse
    assert replay(records(SRT_REWARDS, SRT_VAL, step0_row=False)) == []


def test_healthy_run_with_step0_row_stays_quiet():
    # m-grpo at the demo's lr over 150 steps (seed 0): accuracy wobbles around its start
    # (58.0 -> 55.5 / 59.8 / 56.8 / 60.2 / 61.1 / 59.8 %) while reward rises to ~0.95
    val = {0: 0.580, 25: 0.555, 50: 0.598, 75: 0.568, 100: 0.602, 125: 0.611, 150: 0.598}
    rewards = [0.58 + 0.37 * min(1.0, s / 100) + 0.05 * ((-1) ** s) for s in range(1, 151)]
    assert replay(records(rewards, val, step0_row=True)) == []


def test_flat_reward_with_falling_val_from_step0_stays_quiet():
    val = {0: 0.60, 10: 0.50, 20: 0.45, 30: 0.40, 40: 0.40}
    assert replay(records([0.6] * 40, val, step0_row=True)) == []


def test_reward_baseline_waits_for_the_warmup_window():
    alarm = CollapseAlarm(CollapseAlarmConfig(warmup_steps=4))
    rows = records([0.5, 0.6, 0.7, 0.8, 0.9], {0: 0.6}, step0_row=True)
    for row in rows[:4]:  # the step-0 row and three rewards: no baseline yet
        alarm.update(row)
        assert alarm.state_dict()["reward_at_best"] is None
    alarm.update(rows[4])
    assert alarm.state_dict()["reward_at_best"] == pytest.approx(0.65)  # median of 4 rewards


def test_alarm_thresholds_are_config_keys():
    cfg = resolve_config("tiny", ["diagnostics.alarm.val_drop=0.1", "diagnostics.alarm.patience=5"])
    assert cfg.diagnostics.alarm == CollapseAlarmConfig(val_drop=0.1, patience=5)
    with pytest.raises(ConfigError, match=r"diagnostics\.alarm.*val_drop"):
        resolve_config("tiny", ["diagnostics.alarm.val_drop=-1"])
    with pytest.raises(ConfigError, match=r"unknown key 'diagnostics\.alarm\.drop'"):
        resolve_config("tiny", ["diagnostics.alarm.drop=0.1"])
