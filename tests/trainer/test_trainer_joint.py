"""M-GRPO's policy and momentum rollouts share one decode loop when both engines are `fast`."""

from __future__ import annotations

import torch

from mgrpo.config import config_from_dict, load_recipe
from mgrpo.rollout import SamplingParams
from mgrpo.rollout.fast_engine import FastEngine
from mgrpo.rollout.groups import generate_groups
from mgrpo.train.run.trainer import build_run
from mgrpo.train.step import StepBatch, train_step


def _run(tmp_path, **algorithm):
    data = load_recipe("tiny")
    data["algorithm"].update(algorithm)
    data["trainer"]["progress"] = False
    data["validation"] = {"data": None}
    cfg = config_from_dict(data)
    return cfg, build_run(cfg, tmp_path / "run")


def test_mgrpo_step_decodes_policy_and_momentum_in_one_loop(tmp_path, monkeypatch):
    cfg, run = _run(tmp_path, preset="m-grpo")
    models = run.models
    assert type(models.policy_engine) is FastEngine and type(models.momentum_engine) is FastEngine
    calls = {"joint": 0, "generate": 0}
    real_joint = FastEngine.generate_joint

    def joint(self, prompts, groups):
        calls["joint"] += 1
        assert [g[0] for g in groups] == [models.policy_engine, models.momentum_engine]
        return real_joint(self, prompts, groups)

    def generate(self, *args, **kwargs):
        calls["generate"] += 1
        raise AssertionError("separate generate called in an m-grpo step")

    monkeypatch.setattr(FastEngine, "generate_joint", joint)
    monkeypatch.setattr(FastEngine, "generate", generate)
    records, ids = run.train_set.batch(1, cfg.trainer.prompts_per_step)
    metrics = train_step(models, StepBatch(ids, [r.answer for r in records]), cfg, run.spec, 1)
    assert calls == {"joint": 1, "generate": 0}
    assert metrics["entropy/momentum"] == metrics["entropy/momentum"]  # sampled, not NaN
    models.checker.close()


def test_joint_rollouts_equal_separate_rollouts_greedy(tmp_path):
    """Same greedy rollouts as two separate engine calls, per stream, prompt-major; also in
    the per-prompt seeding mode used under data parallelism."""
    cfg, run = _run(tmp_path, preset="m-grpo")
    models = run.models
    with torch.no_grad():  # a momentum model that differs from the policy
        for p in models.momentum.generator.parameters():
            p.mul_(0.9)
    records, ids = run.train_set.batch(1, cfg.trainer.prompts_per_step)
    batch = StepBatch(ids, [r.answer for r in records])

    def params(stream, prompt):
        return SamplingParams(max_new_tokens=8, temperature=0, seed=stream + prompt)

    M, N = run.spec.policy_rollouts, run.spec.momentum_rollouts
    want_p = models.policy_engine.generate(ids, M, params(0, 0))
    want_m = models.momentum_engine.generate(ids, N, params(1, 0))
    groups = [(models.policy_engine, M, 0), (models.momentum_engine, N, 1)]
    for per_prompt in (False, True):
        got_p, got_m = generate_groups(batch.prompt_ids, groups, params,
                                       prompt_offset=batch.prompt_offset, per_prompt=per_prompt)
        for got, want in ((got_p, want_p), (got_m, want_m)):
            width = want.response_ids.shape[1]
            assert torch.equal(got.response_ids[:, :width], want.response_ids)
            assert torch.equal(got.prompt_index, want.prompt_index)
            torch.testing.assert_close(got.logprobs[:, :width], want.logprobs)
    assert not torch.equal(want_p.response_ids[:N], want_m.response_ids[:N])
    models.checker.close()
