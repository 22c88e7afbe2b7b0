"""The keys that take M-GRPO apart (docs/lab-study.md, the factorial): who votes
(`algorithm.policy_votes`), where the IQR filter acts (`algorithm.filter_scope`), and the KL
estimate (`algorithm.kl_estimator`), each through a real step with scripted rollouts."""

from __future__ import annotations

import pytest
from test_trainer_workbench import FIVE, SEVEN, _cfg, _step

from mgrpo.config import ConfigError

# entropies where the IQR filter (k = 0.75) drops exactly the first policy rollout
POLICY_ENTS, MOMENTUM_ENTS = [0.01, 2.0, 2.1, 2.2, 2.3, 2.4], [2.0, 2.1]


def test_policy_votes_false_leaves_the_vote_to_the_momentum_rollouts(tmp_path):
    policy, momentum = [SEVEN] * 6, [FIVE] * 2  # the policy says 7, the momentum model 5
    _, both, _, _ = _step(tmp_path / "a", policy, [1.0] * 6, momentum, [1.0] * 2, iqr_k=None)
    _, silent, seen, _ = _step(tmp_path / "b", policy, [1.0] * 6, momentum, [1.0] * 2,
                               iqr_k=None, policy_votes=False)
    assert both["label/accuracy"] == 0.0 and both["reward/mean"] == 1.0  # label 7
    assert silent["label/accuracy"] == 1.0 and silent["reward/mean"] == 0.0  # label 5
    assert sum(seen["rows"]) == 6  # the policy still trains on all of its rollouts


def test_policy_votes_false_needs_a_momentum_vote():
    with pytest.raises(ConfigError, match="algorithm.policy_votes"):
        _cfg(policy_votes=False, momentum_rollouts=0)
    with pytest.raises(ConfigError, match="algorithm.policy_votes: preset srt does not read it"):
        _cfg(preset="srt", policy_votes=False)


@pytest.mark.parametrize("scope, label_right, loss_rows", [
    ("vote+loss", 1.0, 5),  # the dropped 7 leaves both: 7 x 3, 5 x 4 -> label 5
    ("vote", 1.0, 6),  # it leaves the vote only
    ("loss", 0.0, 5),  # it still votes: 7 x 4, 5 x 4, the tie goes to 7 (opened first)
])
def test_filter_scope_decides_where_dropped_rollouts_go(tmp_path, scope, label_right, loss_rows):
    policy = [SEVEN] * 3 + [FIVE] * 3
    _, m, seen, _ = _step(tmp_path, policy, POLICY_ENTS, [SEVEN, FIVE], MOMENTUM_ENTS,
                          filter_scope=scope)
    assert m["filter/dropped_policy"] == pytest.approx(1 / 6)
    assert m["label/accuracy"] == label_right
    assert sum(seen["rows"]) == loss_rows


def test_filter_scope_rejects_an_unknown_scope():
    with pytest.raises(ConfigError, match="algorithm.filter_scope"):
        _cfg(filter_scope="everything")


@pytest.mark.parametrize("estimator", ["k3", "low_var_kl"])
def test_kl_estimator_reaches_the_loss(tmp_path, estimator):
    _, m, seen, _ = _step(tmp_path, [SEVEN] * 3 + [FIVE] * 3, [1.0] * 6, [FIVE] * 2,
                          [1.0] * 2, iqr_k=None, kl_estimator=estimator)
    assert all(kw["kl_estimator"] == estimator for kw in seen["kw"])


def test_kl_estimator_rejects_an_unknown_name():
    with pytest.raises(ConfigError, match="algorithm.kl_estimator"):
        _cfg(kl_estimator="k9")
