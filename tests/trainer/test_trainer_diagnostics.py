"""Pool diagnostics (tie fraction, dropped share by source, accuracy dropped vs kept, hit rate,
maj@G / pass@G) against hand counts."""

from __future__ import annotations

import math

import torch

from mgrpo.train.logs.diagnostics import pool_diagnostics


def test_counts():
    keep = torch.tensor([[True, False, True, False], [True, True, True, True]])  # n_policy = 3
    rewards = torch.tensor([[1.0, 0.0], [0.5, 0.0]])
    correct = [[True, False, False, True], [False, False, False, False]]
    out = pool_diagnostics(ties=[True, False], keep=keep, n_policy=3, rewards=rewards,
                           pool_correct=correct, majority_correct=[True, False])
    assert out == {
        "label/tie_fraction": 0.5,
        "filter/dropped_policy": 1 / 6,
        "filter/dropped_momentum": 0.5,
        "reward/hit_rate": 0.5,
        "filter/dropped_accuracy": 0.5,  # dropped: (0,1) wrong, (0,3) right
        "filter/kept_accuracy": 1 / 6,  # kept: 6 rollouts, (0,0) right
        "pool/pass@G": 0.5,
        "pool/maj@G": 0.5,
    }


def test_unlabelled_no_vote_no_momentum():
    keep = torch.ones(2, 3, dtype=torch.bool)
    out = pool_diagnostics(ties=None, keep=keep, n_policy=3, rewards=torch.zeros(2, 3),
                           pool_correct=None, majority_correct=None)
    assert out == {"filter/dropped_policy": 0.0, "reward/hit_rate": 0.0}


def test_nothing_dropped_gives_nan_dropped_accuracy():
    keep = torch.ones(1, 2, dtype=torch.bool)
    out = pool_diagnostics(ties=[False], keep=keep, n_policy=2, rewards=torch.ones(1, 2),
                           pool_correct=[[True, False]], majority_correct=[True])
    assert math.isnan(out["filter/dropped_accuracy"]) and out["filter/kept_accuracy"] == 0.5
