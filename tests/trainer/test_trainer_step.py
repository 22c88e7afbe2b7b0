"""train_step semantics (docs/design.md §3) on the tiny model with scripted rollouts."""

from __future__ import annotations

import torch

from conftest import ScriptedEngine
from mgrpo.config import config_from_dict, load_recipe
from mgrpo.train.algorithm import resolve_algorithm
from mgrpo.train.run.trainer import build_run
from mgrpo.train.step import StepBatch, train_step


def _cfg(**algorithm):
    data = load_recipe("tiny")
    data["algorithm"].update(algorithm)
    data["trainer"]["progress"] = False
    data["validation"] = {"data": None}
    return config_from_dict(data)


def _run(tmp_path, **algorithm):
    cfg = _cfg(**algorithm)
    return cfg, build_run(cfg, tmp_path / "run")


def _snapshot(model):
    return [p.detach().clone().float() for p in model.parameters()]


def test_momentum_is_ema_of_policy_after_one_step(tmp_path):
    cfg, run = _run(tmp_path, momentum=0.9)
    theta0 = _snapshot(run.models.policy)
    records, ids = run.train_set.batch(1, cfg.trainer.prompts_per_step)
    # scripted answers with a clear majority so the loss is non-zero
    M, N = run.spec.policy_rollouts, run.spec.momentum_rollouts
    texts = [["\\boxed{3}"] * (M // 2) + ["\\boxed{4}"] * (M - M // 2)] * len(ids)
    ents = [[1.0 + 0.01 * j for j in range(M)]] * len(ids)
    run.models.policy_engine = ScriptedEngine(run.models.tokenizer, texts, ents)
    run.models.momentum_engine = ScriptedEngine(
        run.models.tokenizer, [["\\boxed{3}"] * N] * len(ids), [[1.0] * N] * len(ids)
    )
    train_step(run.models, StepBatch(ids, [r.answer for r in records]), cfg, run.spec, 1)
    theta1 = _snapshot(run.models.policy)
    assert any(not torch.equal(a, b) for a, b in zip(theta0, theta1)), "policy did not move"
    for master, t0, t1 in zip(run.models.momentum.master, theta0, theta1):
        torch.testing.assert_close(master, 0.9 * t0 + 0.1 * t1, rtol=1e-6, atol=1e-7)


def test_momentum_one_never_moves(tmp_path):
    cfg, run = _run(tmp_path, momentum=1.0)
    before = [t.clone() for t in run.models.momentum.master]
    for step in (1, 2):
        records, ids = run.train_set.batch(step, cfg.trainer.prompts_per_step)
        train_step(run.models, StepBatch(ids, [r.answer for r in records]), cfg, run.spec, step)
    for a, b in zip(before, run.models.momentum.master):
        assert torch.equal(a, b)


def _scripted_step(tmp_path, policy_texts, policy_ents, momentum_texts, momentum_ents, **algo):
    cfg, run = _run(tmp_path, **algo)
    records, ids = run.train_set.batch(1, 1)
    batch = StepBatch(ids, [records[0].answer])
    run.models.policy_engine = ScriptedEngine(run.models.tokenizer, [policy_texts], [policy_ents])
    run.models.momentum_engine = ScriptedEngine(
        run.models.tokenizer, [momentum_texts], [momentum_ents]
    )
    seen = {}
    import mgrpo.train.step_updates as step_module

    real = step_module.policy_loss

    def spy(logp, logp_old, logp_ref, advantages, mask, **kw):
        seen.setdefault("adv", []).append(advantages.detach().clone())
        seen.setdefault("rows", []).append(mask.shape[0])
        return real(logp, logp_old, logp_ref, advantages, mask, **kw)

    step_module.policy_loss = spy
    try:
        metrics = train_step(run.models, batch, cfg.__class__(**{**cfg.__dict__, "trainer": cfg.trainer.__class__(**{**cfg.trainer.__dict__, "prompts_per_step": 1})}), run.spec, 1)
    finally:
        step_module.policy_loss = real
    return run, metrics, seen


def test_momentum_rollouts_vote_but_never_train(tmp_path):
    # policy: 3 say 7, 3 say 5; momentum: 2 say 5 -> the momentum votes decide label 5
    policy = ["\\boxed{7}"] * 3 + ["\\boxed{5}"] * 3
    run, metrics, seen = _scripted_step(
        tmp_path, policy, [1.0] * 6, ["\\boxed{5}"] * 2, [1.0] * 2, iqr_k=None
    )
    assert run.spec.momentum_rollouts == 2 and run.spec.policy_rollouts == 6
    assert metrics["reward/mean"] == 0.5  # label 5, decided by the momentum votes
    assert sum(seen["rows"]) == 6  # only the 6 policy rollouts enter the loss
    adv = torch.cat(seen["adv"])
    assert (adv[:3] < 0).all() and (adv[3:] > 0).all()


def test_iqr_dropped_policy_rollouts_leave_the_loss(tmp_path):
    # rollout 0 has a far lower entropy than the rest -> dropped by the IQR filter
    policy = ["\\boxed{5}"] * 6
    ents = [0.01, 2.0, 2.1, 2.2, 2.3, 2.4]
    run, metrics, seen = _scripted_step(
        tmp_path, policy, ents, ["\\boxed{5}"] * 2, [2.0, 2.1], iqr_k=0.75
    )
    assert metrics["filter/dropped_fraction"] == 1 / 8
    assert sum(seen["rows"]) == 5  # the dropped rollout is not in the loss set


def test_scope_vote_keeps_dropped_rollouts_in_the_loss(tmp_path):
    policy = ["\\boxed{5}"] * 6
    ents = [0.01, 2.0, 2.1, 2.2, 2.3, 2.4]
    _, _, seen = _scripted_step(
        tmp_path, policy, ents, ["\\boxed{5}"] * 2, [2.0, 2.1], iqr_k=0.75, filter_scope="vote"
    )
    assert sum(seen["rows"]) == 6


def test_srt_generates_no_momentum_rollouts(tmp_path):
    cfg, run = _run(tmp_path, preset="srt")
    assert run.models.momentum is None and run.models.momentum_engine is None
    calls = []
    engine = run.models.policy_engine
    real = engine.generate

    def counting(prompt_ids, n, params):
        calls.append(n)
        return real(prompt_ids, n, params)

    engine.generate = counting
    records, ids = run.train_set.batch(1, cfg.trainer.prompts_per_step)
    metrics = train_step(run.models, StepBatch(ids, [r.answer for r in records]), cfg, run.spec, 1)
    assert calls == [cfg.algorithm.rollouts]
    assert metrics["filter/dropped_fraction"] == 0.0


def test_mgrpo_without_momentum_or_filter_equals_srt():
    a = resolve_algorithm(_cfg(preset="srt").algorithm)
    b = resolve_algorithm(_cfg(momentum_rollouts=0, iqr_k=None).algorithm)
    assert (a.policy_rollouts, a.momentum_rollouts, a.iqr_k) == (
        b.policy_rollouts, b.momentum_rollouts, b.iqr_k,
    )


def test_gradient_accumulation_gives_the_same_update(tmp_path):
    """Same summed gradient (the update's input) for 1 micro-batch vs many; the AdamW step
    then only differs where a gradient entry is ~0 and Adam's g / sqrt(v) amplifies fp32
    summation order, so the weights are compared where the gradient is not ~0, and bounded by
    one step elsewhere."""
    weights, grads = [], []
    for micro in (64, 2):
        data = load_recipe("tiny")
        data["trainer"].update(progress=False, micro_batch_size=micro)
        data["validation"] = {"data": None}
        cfg = config_from_dict(data)
        run = build_run(cfg, tmp_path / f"run{micro}")
        M = run.spec.policy_rollouts
        texts = [["\\boxed{1}"] * 2 + ["\\boxed{2}"] * (M - 2)] * 2
        ents = [[1.0 + 0.1 * j for j in range(M)]] * 2
        run.models.policy_engine = ScriptedEngine(run.models.tokenizer, texts, ents)
        run.models.momentum_engine = ScriptedEngine(
            run.models.tokenizer, [["\\boxed{2}"] * 2] * 2, [[1.2, 1.3]] * 2
        )
        records, ids = run.train_set.batch(1, 2)
        seen = []

        def record_grads(opt, args, kwargs, _seen=seen, _run=run):  # a hook: step stays wrapped
            _seen.append([p.grad.detach().clone() for p in _run.models.policy.parameters()])

        run.models.optimizer.register_step_pre_hook(record_grads)
        train_step(run.models, StepBatch(ids, [r.answer for r in records]), cfg, run.spec, 1)
        grads.append(seen[0])
        weights.append(_snapshot(run.models.policy))
    assert any(g.abs().sum() > 0 for g in grads[0])
    for a, b in zip(*grads):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-7)
    lr = cfg.optim.lr
    for a, b, ga, gb in zip(*weights, *grads):
        # Adam's first step moves an entry by lr * g / (|g| + eps): well conditioned where
        # |g| >> eps = 1e-8, but where g is ~0 (seen: 4e-9 vs 7e-9 on AVX512 kernels) the
        # summation order alone can move it anywhere within one step of lr either way
        settled = (ga.abs() > 1e-6) & (gb.abs() > 1e-6)
        torch.testing.assert_close(a[settled], b[settled], rtol=1e-3, atol=1e-4)
        assert float((a - b).abs().max()) <= 2 * lr * (1 + 1e-3)


def test_kl_is_exactly_zero_while_the_policy_is_the_reference(tmp_path):
    """updates_per_step = 2: logp_ref is scored over the updates' own micro-batches by the
    same forward as the training log-probs, so at step 1 (policy == reference) KL = 0."""
    data = load_recipe("tiny")
    data["trainer"].update({"progress": False, "updates_per_step": 2})
    data["validation"] = {"data": None}
    cfg = config_from_dict(data)
    run = build_run(cfg, tmp_path / "run")
    assert run.models.reference is not None and cfg.algorithm.kl_coef > 0
    records, ids = run.train_set.batch(1, cfg.trainer.prompts_per_step)
    metrics = train_step(run.models, StepBatch(ids, [r.answer for r in records]), cfg, run.spec, 1)
    assert metrics["loss/kl"] == 0.0
    run.models.checker.close()
