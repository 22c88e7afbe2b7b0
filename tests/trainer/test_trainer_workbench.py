"""The workbench wired into the step: user rewards (through the real CLI), the new presets
against their formulas, vote options, stabilisers, diagnostics and the samples log."""

from __future__ import annotations

import json
import math
import subprocess
import sys

import pytest
import torch

from conftest import ScriptedEngine
from mgrpo.config import config_from_dict, load_recipe
from mgrpo.core.ema import cosine_momentum
from mgrpo.core.intrinsic import cluster_share
from mgrpo.methods import REWARDS
from mgrpo.train.rewards import register_reward
from mgrpo.train.run.trainer import build_run
from mgrpo.train.step import StepBatch, train_step

SEVEN, FIVE = "\\boxed{7}", "\\boxed{5}"


def _cfg(trainer=None, **algorithm):
    data = load_recipe("tiny")
    data["algorithm"].update(algorithm)
    data["trainer"].update({"progress": False, "prompts_per_step": 1, **(trainer or {})})
    data["validation"] = {"data": None}
    return config_from_dict(data)


def _step(tmp_path, policy_texts, policy_ents, momentum_texts=(), momentum_ents=(),
          spy=None, answer="5", **algorithm):
    cfg = _cfg(**algorithm)
    run = build_run(cfg, tmp_path / "run")
    records, ids = run.train_set.batch(1, 1)
    run.models.policy_engine = ScriptedEngine(run.models.tokenizer, [policy_texts], [policy_ents])
    if run.models.momentum_engine is not None:
        run.models.momentum_engine = ScriptedEngine(
            run.models.tokenizer, [list(momentum_texts)], [list(momentum_ents)])
    seen = {}
    import mgrpo.train.step_updates as updates

    real = updates.policy_loss

    def spying(logp, logp_old, logp_ref, advantages, mask, **kw):
        seen.setdefault("rows", []).append(mask.shape[0])
        seen.setdefault("kw", []).append(kw)
        return real(logp, logp_old, logp_ref, advantages, mask, **kw)

    updates.policy_loss = spying
    samples = []
    try:
        metrics = train_step(run.models, StepBatch(ids, [answer]), cfg, run.spec, 1, samples=samples)
    finally:
        updates.policy_loss = real
    return run, metrics, seen, samples


# ---------------------------------------------------------------- rewards users write

USER_REWARD = '''
import torch

def by_length(record):
    B, M = record.shape
    assert record.response_ids.shape[:2] == (B, len(record.sources))
    assert record.sources[:M] == ["policy"] * M and record.sources[-1] == "momentum"
    assert len(record.texts[0]) == len(record.answers[0]) == len(record.sources)
    assert record.entropies.shape == record.kept.shape == (B, len(record.sources))
    assert record.step >= 1 and len(record.labels) == B
    return (record.lengths[:, :M].float() / 100.0).tolist()

def wrong_shape(record):
    return [1.0, 2.0]

def boom(record):
    raise RuntimeError("kaboom")
'''


def _cli(tmp_path, *overrides):
    return subprocess.run(
        [sys.executable, "-m", "mgrpo", "train", "tiny", "trainer.max_steps=1",
         "trainer.progress=false", "validation.data=null", "trainer.report_to=[]",
         "-o", str(tmp_path / "run"), *overrides],
        capture_output=True, text=True, timeout=300, cwd=tmp_path)


def test_user_reward_file_through_the_cli(tmp_path):
    (tmp_path / "my_rewards.py").write_text(USER_REWARD)
    done = _cli(tmp_path, "algorithm.reward=my_rewards.py:by_length")
    assert done.returncode == 0, done.stderr[-2000:]
    row = json.loads((tmp_path / "run" / "metrics.jsonl").read_text().splitlines()[-1])
    # tiny responses run to max_new_tokens (16) or stop earlier: reward = length / 100 > 0
    assert 0.0 < row["reward/mean"] <= 0.17


@pytest.mark.parametrize(("fn", "message"), [
    ("wrong_shape", r"reward function my_rewards.py:wrong_shape at step 1 returned shape \(2,\)"),
    ("boom", r"reward function my_rewards.py:boom raised at step 1: RuntimeError: kaboom"),
])
def test_user_reward_errors_name_function_and_step(tmp_path, fn, message):
    import re

    (tmp_path / "my_rewards.py").write_text(USER_REWARD)
    done = _cli(tmp_path, f"algorithm.reward=my_rewards.py:{fn}")
    assert done.returncode != 0
    assert re.search(message, done.stderr), done.stderr[-2000:]


def test_missing_user_reward_file_is_a_config_error(tmp_path):
    done = _cli(tmp_path, "algorithm.reward=nowhere.py:fn")
    assert done.returncode == 2 and "nowhere.py" in done.stderr and "not found" in done.stderr
    assert "config error: algorithm.reward:" in done.stderr and "Traceback" not in done.stderr
    assert not (tmp_path / "run").exists()  # found before the run directory is touched


def test_unknown_reward_name_lists_the_registry():
    with pytest.raises(ValueError, match="algorithm.reward: unknown reward 'votes'; valid names: "
                                         ".*, vote"):
        _cfg(reward="votes")


def test_python_api_and_weighted_mix(tmp_path):
    register_reward("test_ones", lambda record: torch.ones(record.shape))
    try:
        policy = [SEVEN] * 3 + [FIVE] * 3
        _, m, _, _ = _step(tmp_path / "a", policy, [1.0] * 6, [FIVE] * 2, [1.0] * 2,
                           iqr_k=None, rewards=[{"fn": "vote", "weight": 1.0},
                                                {"fn": "test_ones", "weight": 0.5}])
        assert m["reward/mean"] == pytest.approx(0.5 * 1.0 + 0.5)  # vote 5 -> half right
        with pytest.raises(ValueError, match="built in"):
            register_reward("vote", lambda r: None)
    finally:
        REWARDS.unregister("test_ones")


# ---------------------------------------------------------------- presets vs their formulas

def test_co_rewarding_ii_only_the_teacher_votes_and_cosine_ema(tmp_path):
    cfg = _cfg(preset="co-rewarding-ii", momentum_rollouts=2)
    assert cfg.algorithm.preset == "co-rewarding-ii"
    policy = [SEVEN] * 8  # the policy agrees on 7, the teacher on 5: the label is 5
    run, m, seen, _ = _step(tmp_path, policy, [1.0] * 8, [FIVE] * 2, [1.0] * 2,
                            preset="co-rewarding-ii", momentum_rollouts=2)
    assert run.spec.policy_rollouts == 8 and run.spec.momentum_rollouts == 2
    assert m["reward/mean"] == 0.0 and m["label/accuracy"] == 1.0
    assert cosine_momentum(1, 3, 0.01, 1e-5) == pytest.approx(0.99)


def test_co_rewarding_ii_teacher_follows_the_schedule(tmp_path):
    cfg = _cfg(preset="co-rewarding-ii", momentum_rollouts=2, teacher_alpha=[0.5, 0.1])
    run = build_run(cfg, tmp_path / "run")
    theta0 = [p.detach().clone().float() for p in run.models.policy.parameters()]
    records, ids = run.train_set.batch(1, 1)
    run.models.policy_engine = ScriptedEngine(run.models.tokenizer, [[SEVEN] * 4 + [FIVE] * 4],
                                              [[1.0] * 8])
    run.models.momentum_engine = ScriptedEngine(run.models.tokenizer, [[FIVE] * 2], [[1.0] * 2])
    train_step(run.models, StepBatch(ids, [None]), cfg, run.spec, 1)
    m = cosine_momentum(1, cfg.trainer.max_steps, 0.5, 0.1)
    assert m == pytest.approx(0.5)
    theta1 = [p.detach().float() for p in run.models.policy.parameters()]
    for master, t0, t1 in zip(run.models.momentum.master, theta0, theta1):
        torch.testing.assert_close(master, m * t0 + (1 - m) * t1, rtol=1e-6, atol=1e-7)


def test_empo_rewards_cluster_shares(tmp_path):
    policy = [SEVEN, SEVEN, FIVE, "no answer", SEVEN, FIVE, "x", SEVEN]
    _, m, _, samples = _step(tmp_path, policy, [1.0] * 8, preset="empo")
    answers = [r.answer for r in samples[0].rollouts]
    want = cluster_share([answers], str.__eq__)[0]  # 7: 4/8, 5: 2/8, none: 0
    assert [r.reward for r in samples[0].rollouts] == pytest.approx(want)
    assert m["reward/mean"] == pytest.approx(sum(want) / 8)


def test_em_rl_and_rent_read_the_token_entropies(tmp_path):
    ents = [0.5, 1.0, 1.5, 2.0, 0.1, 0.2, 0.3, 0.4]
    policy = [SEVEN] * 8
    _, _, _, em = _step(tmp_path / "em", policy, ents, preset="em-rl")
    _, _, _, rent = _step(tmp_path / "rent", policy, ents, preset="rent", rent_tokens=3)
    run = build_run(_cfg(), tmp_path / "tok")
    n_tokens = len(run.models.tokenizer(SEVEN, add_special_tokens=False)["input_ids"]) + 1  # EOS
    for r, h in zip(em[0].rollouts, ents):  # scripted: every token of rollout j has entropy h
        assert r.reward == pytest.approx(-h * n_tokens, rel=1e-6)
    for r, h in zip(rent[0].rollouts, ents):
        assert r.reward == pytest.approx(-h, rel=1e-6)


def test_random_is_seeded_bernoulli(tmp_path):
    _, a, _, sa = _step(tmp_path / "a", [SEVEN] * 8, [1.0] * 8, preset="random", random_p=0.5)
    _, b, _, sb = _step(tmp_path / "b", [SEVEN] * 8, [1.0] * 8, preset="random", random_p=0.5)
    assert [r.reward for r in sa[0].rollouts] == [r.reward for r in sb[0].rollouts]
    assert set(r.reward for r in sa[0].rollouts) <= {0.0, 1.0}
    _, c, _, _ = _step(tmp_path / "c", [SEVEN] * 8, [1.0] * 8, preset="random", random_p=0.0)
    assert c["reward/mean"] == 0.0


# ---------------------------------------------------------------- vote options

def test_momentum_vote_weight_and_ties(tmp_path):
    policy = [SEVEN] * 4 + [FIVE] * 2  # policy: 4 x 7, 2 x 5; momentum: 2 x 5
    _, plain, _, _ = _step(tmp_path / "a", policy, [1.0] * 6, [FIVE] * 2, [1.0] * 2, iqr_k=None,
                           answer="7")
    assert plain["label/accuracy"] == 1.0 and plain["label/tie_fraction"] == 1.0  # 4-4 tie -> 7
    _, weighted, _, _ = _step(tmp_path / "b", policy, [1.0] * 6, [FIVE] * 2, [1.0] * 2,
                              iqr_k=None, answer="7", momentum_vote_weight=2.0)
    assert weighted["label/accuracy"] == 0.0 and weighted["label/tie_fraction"] == 0.0  # 4-6
    _, mfirst, _, _ = _step(tmp_path / "c", policy, [1.0] * 6, [FIVE] * 2, [1.0] * 2,
                            iqr_k=None, answer="7", vote_ties="momentum-first")
    assert mfirst["label/accuracy"] == 0.0  # the tie goes to the momentum model's 5


# ---------------------------------------------------------------- stabilisers

def test_dynamic_sampling_filter_drops_constant_groups(tmp_path):
    policy = [FIVE] * 6  # every rollout agrees: constant reward
    _, off, seen_off, _ = _step(tmp_path / "a", policy, [1.0] * 6, [FIVE] * 2, [1.0] * 2,
                                iqr_k=None)
    _, on, seen_on, _ = _step(tmp_path / "b", policy, [1.0] * 6, [FIVE] * 2, [1.0] * 2,
                              iqr_k=None, dynamic_sampling="filter")
    assert sum(seen_off["rows"]) == 6 and "rows" not in seen_on  # nothing left to train on
    assert on["dynamic/filtered_fraction"] == 1.0 and "dynamic/filtered_fraction" not in off


def test_clip_and_entropy_options_reach_the_loss(tmp_path):
    policy = [SEVEN] * 3 + [FIVE] * 3
    _, m, seen, _ = _step(tmp_path, policy, [1.0] * 6, [FIVE] * 2, [1.0] * 2, iqr_k=None,
                          clip_high=0.28, clip_low=0.1, entropy_coef=0.01)
    kw = seen["kw"][0]
    assert (kw["clip_low"], kw["clip_high"], kw["entropy_coef"]) == (0.1, 0.28, 0.01)
    assert kw["entropy"] is not None and kw["entropy"].requires_grad
    assert m["loss/entropy"] > 0


def test_overlong_penalty_is_added(tmp_path):
    policy = [SEVEN] * 3 + [FIVE] * 3
    _, m, _, _ = _step(tmp_path, policy, [1.0] * 6, [FIVE] * 2, [1.0] * 2, iqr_k=None,
                       overlong_cache=16)  # L_max = 16 = L_cache: every token costs 1/16
    assert m["reward/overlong_penalty_mean"] < 0


def test_defaults_log_no_option_keys(tmp_path):
    _, m, seen, _ = _step(tmp_path, [SEVEN] * 3 + [FIVE] * 3, [1.0] * 6, [FIVE] * 2, [1.0] * 2)
    assert not {"loss/entropy", "dynamic/filtered_fraction", "reward/overlong_penalty_mean"} & set(m)
    assert seen["kw"][0]["entropy"] is None


# ---------------------------------------------------------------- diagnostics and samples

def test_diagnostics_and_samples_of_a_step(tmp_path):
    ents = [0.01, 2.0, 2.1, 2.2, 2.3, 2.4]
    _, m, _, samples = _step(tmp_path, [SEVEN] + [FIVE] * 5, ents, [FIVE] * 2, [2.0, 2.1])
    assert m["filter/dropped_policy"] == 1 / 6 and m["filter/dropped_momentum"] == 0.0
    assert m["filter/dropped_accuracy"] == 0.0 and m["filter/kept_accuracy"] == 1.0
    assert m["pool/pass@G"] == 1.0 and m["pool/maj@G"] == 1.0
    assert m["reward/hit_rate"] == pytest.approx(5 / 6)
    (rec,) = samples
    assert rec.label == "5" and rec.truth == "5" and rec.step == 1
    assert [r.source for r in rec.rollouts] == ["policy"] * 6 + ["momentum"] * 2
    assert [r.kept for r in rec.rollouts] == [False] + [True] * 7
    assert rec.rollouts[0].answer == "7" and "\\boxed{7}" in rec.rollouts[0].text
    assert rec.rollouts[-1].reward is None and rec.rollouts[1].reward == 1.0
    assert not math.isnan(rec.rollouts[0].entropy)


def test_samples_log_through_training_and_resume(tmp_path):
    from mgrpo.train.run.trainer import train

    cfg = _cfg(trainer={"max_steps": 4, "save_every": 2, "log_samples_every": 2,
                        "prompts_per_step": 2, "report_to": []})
    train(cfg, tmp_path / "run")
    lines = (tmp_path / "run" / "samples.jsonl").read_text().splitlines()
    assert [json.loads(x)["step"] for x in lines] == [2, 2, 4, 4]
    train(cfg, tmp_path / "run", resume=True)  # already at the end: nothing is duplicated
    assert (tmp_path / "run" / "samples.jsonl").read_text().splitlines() == lines


def test_kl_to_teacher_scores_the_reference_with_the_momentum_model(tmp_path):
    import mgrpo.train.step_updates as updates

    cfg = _cfg(preset="co-rewarding-ii", momentum_rollouts=2, kl_to_teacher=True)
    run = build_run(cfg, tmp_path / "run")
    records, ids = run.train_set.batch(1, 1)
    run.models.policy_engine = ScriptedEngine(run.models.tokenizer, [[SEVEN] * 4 + [FIVE] * 4],
                                              [[1.0] * 8])
    run.models.momentum_engine = ScriptedEngine(run.models.tokenizer, [[FIVE] * 2], [[1.0] * 2])
    scored, real = [], updates.score

    def spying(model, *args, **kwargs):
        scored.append(model)
        return real(model, *args, **kwargs)

    updates.score = spying
    try:
        train_step(run.models, StepBatch(ids, [None]), cfg, run.spec, 1)
    finally:
        updates.score = real
    assert any(m is run.models.momentum.generator for m in scored)
    assert all(m is not run.models.reference for m in scored)
    with pytest.raises(ValueError, match="kl_to_teacher: preset srt does not read it"):
        _cfg(preset="srt", kl_to_teacher=True)
    with pytest.raises(ValueError, match="kl_to_teacher: preset m-grpo samples no momentum"):
        _cfg(momentum_rollouts=0, kl_to_teacher=True)
