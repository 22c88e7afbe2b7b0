"""The TRL / verl loss and update options wired into the real step (scripted rollouts on the
tiny model) and through the CLI: algorithm.epochs, ratio_level, policy_loss,
top_entropy_quantile and dynamic_sampling resample."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
import torch

from conftest import ScriptedEngine
from mgrpo.config import config_from_dict, load_recipe
from mgrpo.core.entropy import top_entropy_mask
from mgrpo.rollout import score_responses
from mgrpo.seeds import POLICY_STREAM, resample_stream, step_seed
from mgrpo.train.run.trainer import build_run
from mgrpo.train.step import StepBatch, train_step
from mgrpo.train.step_updates import train_mode

SEVEN, FIVE = "\\boxed{7}", "\\boxed{5}"
MIXED = [SEVEN] * 3 + [FIVE] * 3  # the vote says 5 (policy-first tie 3-3 broken by momentum)


def _cfg(trainer=None, **algorithm):
    data = load_recipe("tiny")
    data["algorithm"].update({"iqr_k": None, **algorithm})
    data["trainer"].update({"progress": False, "prompts_per_step": 1, **(trainer or {})})
    data["validation"] = {"data": None}
    return config_from_dict(data)


class CallScriptedEngine(ScriptedEngine):
    """A ScriptedEngine whose k-th call answers from `scripts[k]` (then the last script) and
    records each call's prompts, n and sampling seed."""

    def __init__(self, tokenizer, scripts, entropy=1.0):
        super().__init__(tokenizer, scripts[0], None)
        self.scripts, self.entropy, self.log = scripts, entropy, []

    def generate(self, prompt_ids, n, params):
        texts = self.scripts[min(len(self.log), len(self.scripts) - 1)]
        self.log.append((len(prompt_ids), n, params.seed))
        self.texts = texts
        self.entropies = [[self.entropy] * len(row) for row in texts]
        return super().generate(prompt_ids, n, params)


def _run(tmp_path, policy_scripts, momentum_scripts, *, trainer=None, spy_loss=False,
         **algorithm):
    cfg = _cfg(trainer, **algorithm)
    run = build_run(cfg, tmp_path / "run")
    B = cfg.trainer.prompts_per_step
    records, ids = run.train_set.batch(1, B)
    run.models.policy_engine = CallScriptedEngine(run.models.tokenizer, policy_scripts)
    run.models.momentum_engine = CallScriptedEngine(run.models.tokenizer, momentum_scripts)
    seen = []
    import mgrpo.train.step_updates as updates

    real = updates.policy_loss

    def spying(logp, logp_old, logp_ref, advantages, mask, **kw):
        seen.append({"logp": logp.detach().clone(), "logp_old": logp_old.detach().clone(),
                     "rows": mask.shape[0], "mask": mask.clone(), **kw})
        return real(logp, logp_old, logp_ref, advantages, mask, **kw)

    updates.policy_loss = spying
    try:
        metrics = train_step(run.models, StepBatch(ids, ["5"] * B), cfg, run.spec, 1)
    finally:
        updates.policy_loss = real
    return run, metrics, seen, ids


# ---------------------------------------------------------------- algorithm.epochs

def test_epochs_rerun_the_updates_against_the_first_logp_old_and_ema_each_step(tmp_path):
    """mu = 2, U = 1: two optimizer steps over the same loss rows; the first reads its own
    detached log-probs, the second the frozen logp_old of the weights before the first (so
    its ratio moves off 1); the EMA follows each optimizer step; the lr schedule one step."""
    cfg = _cfg(epochs=2)
    run = build_run(cfg, tmp_path / "run")
    _, ids = run.train_set.batch(1, 1)
    run.models.policy_engine = ScriptedEngine(run.models.tokenizer, [MIXED], [[1.0] * 6])
    run.models.momentum_engine = ScriptedEngine(run.models.tokenizer, [[FIVE] * 2], [[1.0] * 2])
    models = run.models
    theta = [[p.detach().clone() for p in models.policy.parameters()]]
    k0 = [t.clone() for t in models.momentum.master]
    emas = []
    models.optimizer.register_step_post_hook(
        lambda *_: theta.append([p.detach().clone() for p in models.policy.parameters()]))
    real_update = models.momentum.update_

    def updating(policy, m):
        emas.append(m)
        return real_update(policy, m)

    models.momentum.update_ = updating
    seen = []
    import mgrpo.train.step_updates as updates

    real = updates.policy_loss

    def spying(logp, logp_old, logp_ref, advantages, mask, **kw):
        seen.append((logp.detach().clone(), logp_old.detach().clone()))
        return real(logp, logp_old, logp_ref, advantages, mask, **kw)

    updates.policy_loss = spying
    lr_steps = models.scheduler.last_epoch
    try:
        metrics = train_step(models, StepBatch(ids, ["5"]), cfg, run.spec, 1)
    finally:
        updates.policy_loss = real
    assert len(theta) == 3 and emas == [0.99, 0.99]
    assert models.scheduler.last_epoch == lr_steps + 1
    (logp0, old0), (logp1, old1) = seen
    assert torch.equal(old0, logp0)  # pass 1: its own detached log-probs (ratio exactly 1)
    torch.testing.assert_close(old1, logp0)  # pass 2: the same logp_old, from the frozen pass
    assert not torch.allclose(logp1, logp0)  # ... while the weights moved
    # theta_k <- m theta_k + (1 - m) theta_q after each of the two optimizer steps
    index = {n: i for i, (n, _) in enumerate(models.policy.named_parameters())}
    for name, master, start in zip(models.momentum.names, models.momentum.master, k0):
        i = index[name]
        expected = 0.99 * (0.99 * start + 0.01 * theta[1][i]) + 0.01 * theta[2][i]
        torch.testing.assert_close(master, expected, rtol=1e-6, atol=1e-7)
    assert metrics["grad_norm"] > 0


def test_epochs_and_updates_multiply(tmp_path):
    """mu = 2 passes of U = 2 updates: four optimizer steps over the two prompts' halves."""
    _, metrics, seen, _ = _run(tmp_path, [[MIXED, MIXED]], [[[FIVE] * 2, [FIVE] * 2]],
                               trainer={"prompts_per_step": 2, "updates_per_step": 2},
                               epochs=2)
    assert [s["rows"] for s in seen] == [6, 6, 6, 6]
    assert torch.equal(seen[0]["logp_old"], seen[0]["logp"])  # only the very first update
    assert all(not torch.equal(s["logp_old"], s["logp"]) for s in seen[1:])


# ---------------------------------------------------------------- ratio level, CISPO

@pytest.mark.parametrize(("key", "value", "kw"), [("ratio_level", "sequence", "ratio_level"),
                                                   ("policy_loss", "cispo", "loss_mode")])
def test_ratio_level_and_policy_loss_reach_the_loss(tmp_path, key, value, kw):
    _, metrics, seen, _ = _run(tmp_path, [[MIXED]], [[[FIVE] * 2]], **{key: value})
    assert seen and all(s[kw] == value for s in seen)
    assert metrics["grad_norm"] > 0


def test_defaults_pass_the_plain_loss(tmp_path):
    _, metrics, seen, _ = _run(tmp_path, [[MIXED]], [[[FIVE] * 2]])
    (s,) = seen
    assert (s["ratio_level"], s["loss_mode"], s["token_mask"]) == ("token", "ppo", None)
    assert not {k for k in metrics if k.startswith(("dynamic/", "loss/top_entropy"))}


# ---------------------------------------------------------------- top-entropy masking

def test_top_entropy_mask_is_the_quantile_of_the_updates_tokens(tmp_path):
    """The mask passed to the loss is TRL's mask over the current policy's entropies of all
    the update's loss tokens, whatever the micro-batch size."""
    masks = {}
    for mbs in (8, 2):
        run, metrics, seen, ids = _run(tmp_path / f"mbs{mbs}", [[MIXED]], [[[FIVE] * 2]],
                                       trainer={"micro_batch_size": mbs},
                                       top_entropy_quantile=0.3)
        got = [s["token_mask"] for s in seen]
        assert all(m is not None for m in got)
        width = max(m.shape[1] for m in got)
        masks[mbs] = torch.cat([torch.nn.functional.pad(m, (0, width - m.shape[1])) for m in got])
        assert 0 < metrics["loss/top_entropy_kept_fraction"] < 0.5
        assert metrics["loss/top_entropy_threshold"] > 0
    assert torch.equal(masks[8], masks[2])
    # the reference: score the six loss rows with the initial weights, pooled quantile
    cfg = _cfg(top_entropy_quantile=0.3)
    run = build_run(cfg, tmp_path / "ref")
    train = CallScriptedEngine(run.models.tokenizer, [[MIXED]]).generate(ids, 6, _NoSeed())
    with torch.no_grad(), train_mode(run.models.policy):
        _, entropy = score_responses(run.models.policy, [ids[0]] * 6, train.response_ids,
                                     train.response_mask, cfg.generation.temperature)
    expected = top_entropy_mask(entropy, train.response_mask, 0.3)
    width = expected.shape[1]
    assert torch.equal(masks[8][:, :width], expected)


class _NoSeed:
    """A stand-in SamplingParams for calling the scripted engine directly."""

    seed = None


# ---------------------------------------------------------------- dynamic sampling resample

def test_resample_regenerates_a_constant_group_with_its_own_seeds(tmp_path):
    """Prompt 1's first group is constant (all 5); its second draw is mixed. Prompt 0's
    rollouts stay as they were; the logged counts say one group was generated again."""
    first = [MIXED, [FIVE] * 6]
    again = [MIXED]  # the regenerated prompt's new group (one prompt)
    run, metrics, seen, ids = _run(tmp_path, [first, again], [[[FIVE] * 2] * 2, [[FIVE] * 2]],
                                   trainer={"prompts_per_step": 2}, dynamic_sampling="resample")
    log = run.models.policy_engine.log
    assert [(n_prompts, n) for n_prompts, n, _ in log] == [(2, 6), (1, 6)]
    # attempt 1's stream, the slice's offset (one call, tiny's seed 0, step 1)
    assert log[1][2] == step_seed(0, 1, resample_stream(POLICY_STREAM, 1), 0)
    assert run.models.momentum_engine.log[1][:2] == (1, 2)
    assert metrics["dynamic/constant_before"] == 1.0
    assert metrics["dynamic/resampled_groups"] == 1.0
    assert metrics["dynamic/constant_after"] == 0.0
    assert metrics["dynamic/filtered_fraction"] == 0.0
    assert sum(s["rows"] for s in seen) == 12  # both prompts train


def test_resample_stops_at_the_budget_and_filters_what_is_left(tmp_path):
    """A prompt that stays constant: budget 2 -> two regenerations, then it is filtered."""
    run, metrics, seen, _ = _run(tmp_path, [[[FIVE] * 6]], [[[FIVE] * 2]],
                                 dynamic_sampling="resample", resample_budget=2)
    log = run.models.policy_engine.log
    assert len(log) == 3 and len({seed for _, _, seed in log}) == 3  # three distinct draws
    assert metrics["dynamic/resampled_groups"] == 2.0
    assert metrics["dynamic/constant_before"] == metrics["dynamic/constant_after"] == 1.0
    assert metrics["dynamic/filtered_fraction"] == 1.0 and not seen


def test_resample_default_budget_is_one_group_per_prompt(tmp_path):
    run, metrics, _, _ = _run(tmp_path, [[[FIVE] * 6, [FIVE] * 6]], [[[FIVE] * 2] * 2],
                              trainer={"prompts_per_step": 2}, dynamic_sampling="resample")
    assert metrics["dynamic/resampled_groups"] == 2.0  # B = 2 groups, then the budget is spent
    assert [n for n, _, _ in run.models.policy_engine.log] == [2, 2]


# ---------------------------------------------------------------- the CLI, a few steps each

SMOKE = [
    (["algorithm.epochs=2"], "grad_norm"),
    (["algorithm.ratio_level=sequence", "algorithm.loss_agg=seq-mean-token-mean"], "loss/pg"),
    (["algorithm.policy_loss=cispo", "algorithm.clip_high=0.28"], "loss/pg"),
    (["algorithm.top_entropy_quantile=0.2"], "loss/top_entropy_kept_fraction"),
    (["algorithm.dynamic_sampling=resample", "algorithm.resample_budget=2"],
     "dynamic/resampled_groups"),
]


@pytest.mark.parametrize(("overrides", "key"), SMOKE, ids=[o[0] for o, _ in SMOKE])
def test_cli_tiny_runs_each_option(tmp_path, overrides, key):
    out = tmp_path / "run"
    env = {**os.environ, "PYTHONHASHSEED": "0", "OMP_NUM_THREADS": "1"}
    proc = subprocess.run(
        [sys.executable, "-m", "mgrpo", "train", "tiny", "trainer.max_steps=2",
         "trainer.progress=false", "trainer.threads=1", "validation.data=null", *overrides,
         "-o", str(out)], capture_output=True, text=True, timeout=300, env=env)
    assert proc.returncode == 0, proc.stderr[-3000:]
    rows = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in rows] == [1, 2]
    assert all(key in r for r in rows)
    resolved = (out / "config.yaml").read_text()
    for override in overrides:
        name, value = override.split("=", 1)
        assert f"{name.split('.')[-1]}: {value}" in resolved


# ---------------------------------------------------------------- the config keys

def test_config_names_are_the_registry_names():
    from mgrpo.core.losses import POLICY_LOSSES, RATIO_LEVELS
    from mgrpo.fields import literal_names
    from mgrpo.methods.base import PolicyLossName, RatioLevelName

    assert sorted(literal_names(PolicyLossName)) == list(POLICY_LOSSES.names())
    assert tuple(literal_names(RatioLevelName)) == RATIO_LEVELS


@pytest.mark.parametrize(("options", "match"), [
    ({"epochs": 0}, "algorithm.epochs"),
    ({"top_entropy_quantile": 0.0}, "algorithm.top_entropy_quantile"),
    ({"top_entropy_quantile": 1.5}, "algorithm.top_entropy_quantile"),
    ({"policy_loss": "grpo"}, "algorithm.policy_loss"),
    ({"ratio_level": "segment"}, "algorithm.ratio_level"),
    ({"dynamic_sampling": "resample", "resample_budget": 0}, "algorithm.resample_budget"),
    ({"resample_budget": 4}, "read only with dynamic_sampling resample"),
])
def test_bad_values_name_the_key(options, match):
    from mgrpo.fields import ConfigError

    with pytest.raises(ConfigError, match=match):
        _cfg(**options)


def test_defaults_leave_every_option_off():
    from mgrpo.train.algorithm import resolve_algorithm

    spec = resolve_algorithm(_cfg().algorithm)
    assert (spec.loss.policy_loss, spec.loss.ratio_level, spec.loss.top_entropy_quantile,
            spec.epochs, spec.shaping.dynamic_sampling, spec.shaping.resample_budget) == (
        "ppo", "token", 1.0, 1, "off", None)
