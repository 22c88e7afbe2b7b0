"""Precision, modes and devices of a training run: fp32 master under bf16 compute, the pure
bf16 opt-in, float16 refused, gradient checkpointing in the training forward only, the
device a process selects, and the m-grpo group-size check."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from conftest import ScriptedEngine
from mgrpo.config import ConfigError, config_from_dict, load_recipe
from mgrpo.models.loading import load_model_and_tokenizer
from mgrpo.train.run.trainer import TrainingError, build_run, train
from mgrpo.train.step import StepBatch, train_step

LR = 1e-6  # the paper's learning rate: far below half a bf16 ulp of a 0.02 weight


def _cfg(*, model=None, trainer=None, algorithm=None, optim=None):
    data = load_recipe("tiny")
    data["model"].update(model or {})
    data["trainer"].update({"progress": False, "threads": 1, **(trainer or {})})
    data["algorithm"].update(algorithm or {})
    data["optim"].update(optim or {})
    data["validation"] = {"data": None}
    return config_from_dict(data)


def _held_weights(ckpt: Path) -> dict[str, torch.Tensor]:
    """The weights the optimizer holds: the fp32 master when one is written, else the model."""
    master = ckpt / "master.safetensors"
    return load_file(str(master if master.is_file() else ckpt / "model.safetensors"))


def _bf16_run(tmp_path: Path, name: str, **trainer) -> Path:
    cfg = _cfg(model={"dtype": "bfloat16"}, optim={"lr": LR},
               trainer={"max_steps": 3, "save_every": 1, **trainer})
    return train(cfg, tmp_path / name)


def test_bf16_compute_trains_an_fp32_master_that_moves_everywhere(tmp_path):
    out = _bf16_run(tmp_path, "run")
    ckpt = out / "checkpoints" / "step-3"
    held = _held_weights(ckpt)
    init, _ = load_model_and_tokenizer("tiny", dtype="float32", device="cpu", seed=0)
    init_state = {k: v for k, v in init.state_dict().items()}
    moved, total = 0, 0
    for name, value in held.items():
        if "embed_tokens" in name:  # rows of unused tokens get no gradient
            continue
        start = init_state[name].to(value.dtype)
        moved += int((value != start).sum())
        total += value.numel()
    assert moved / total > 0.95, f"only {moved}/{total} entries moved"
    assert held[next(iter(held))].dtype == torch.float32
    # the exported HF model is the master cast to the compute dtype, bit for bit
    exported = load_file(str(ckpt / "model.safetensors"))
    for name, value in exported.items():
        assert value.dtype == torch.bfloat16, name
        assert torch.equal(value, held[name].to(torch.bfloat16)), name
    state = json.loads((ckpt / "trainer_state.json").read_text())
    assert state["precision"] == {"device": "cpu", "compute_dtype": "bfloat16",
                                  "master_dtype": "float32"}


def test_bf16_compute_resume_is_exact(tmp_path):
    straight = _bf16_run(tmp_path, "straight")
    _bf16_run(tmp_path, "split", stop_after=2)
    cfg = _cfg(model={"dtype": "bfloat16"}, optim={"lr": LR},
               trainer={"max_steps": 3, "save_every": 1})
    split = train(cfg, tmp_path / "split", resume=True)

    def rows(run):
        return [{k: v for k, v in json.loads(line).items() if not k.startswith("time/")}
                for line in (run / "metrics.jsonl").read_text().splitlines()]

    assert rows(straight) == rows(split)
    for name in ("master.safetensors", "model.safetensors", "momentum.safetensors",
                 "optimizer.safetensors"):
        a = load_file(str(straight / "checkpoints" / "step-3" / name))
        b = load_file(str(split / "checkpoints" / "step-3" / name))
        assert a.keys() == b.keys()
        for key in a:
            assert torch.equal(a[key], b[key]), (name, key)


def test_mixed_precision_models(tmp_path):
    run = build_run(_cfg(model={"dtype": "bfloat16"}), tmp_path / "run")
    models = run.models
    assert {p.dtype for p in models.policy.parameters()} == {torch.float32}
    assert {p.dtype for p in models.policy_full.parameters()} == {torch.bfloat16}
    assert {p.dtype for p in models.reference.parameters()} == {torch.bfloat16}
    assert {p.dtype for p in models.momentum.generator.parameters()} == {torch.bfloat16}
    assert {t.dtype for t in models.momentum.master} == {torch.float32}
    assert models.train_autocast == torch.bfloat16
    state = models.optimizer.state_dict()
    assert all(v.dtype == torch.float32 for s in state["state"].values()
               for v in s.values() if isinstance(v, torch.Tensor) and v.dim())


def test_pure_bf16_is_an_explicit_choice(tmp_path):
    run = build_run(_cfg(model={"dtype": "bfloat16", "master_dtype": "bfloat16"}), tmp_path / "r")
    assert {p.dtype for p in run.models.policy.parameters()} == {torch.bfloat16}
    assert run.models.policy_full is None and run.models.train_autocast is None
    with pytest.raises(TrainingError, match="model.master_dtype=bfloat16 needs bf16 compute"):
        build_run(_cfg(model={"master_dtype": "bfloat16"}), tmp_path / "r2")


def test_float16_training_is_refused(tmp_path):
    with pytest.raises(TrainingError, match="model.dtype=float16 is not supported for training"):
        build_run(_cfg(model={"dtype": "float16"}), tmp_path / "run")


def test_mgrpo_without_momentum_rollouts_is_refused():
    with pytest.raises(ConfigError, match="algorithm.rollouts: m-grpo with G = 3 gives N = G // 4 = 0"):
        _cfg(algorithm={"rollouts": 3})
    _cfg(algorithm={"rollouts": 3, "momentum_rollouts": 0})  # explicit N = 0 is a choice


@pytest.mark.parametrize("dtype", ["bfloat16", "float32"])
def test_logp_old_is_the_training_forward_so_the_ratio_is_one_on_unchanged_weights(
        tmp_path, monkeypatch, dtype):
    """updates_per_step = 2 with the optimizer step disabled: the weights of update 1 are the
    ones logp_old was computed with, so its training log-probs equal logp_old bit for bit
    (ratio 1, no clipping) -- also under mixed precision, where the bf16 sampling copy
    (`policy_full`) would give other numbers than the autocast forward over the fp32 master."""
    import mgrpo.train.step_updates as updates

    cfg = _cfg(model={"dtype": dtype}, trainer={"updates_per_step": 2, "prompts_per_step": 2})
    run = build_run(cfg, tmp_path / "run")
    assert (run.models.policy_full is not None) == (dtype == "bfloat16")
    seen = []
    real = updates.policy_loss

    def recording(logp, logp_old, logp_ref, advantages, mask, **kwargs):
        if logp_old.data_ptr() != logp.data_ptr():  # update 0 passes logp.detach() itself
            seen.append((logp.detach().clone(), logp_old.clone(), mask.bool()))
        return real(logp, logp_old, logp_ref, advantages, mask, **kwargs)

    monkeypatch.setattr(updates, "policy_loss", recording)
    for group in run.models.optimizer.param_groups:  # weights stay: AdamW at lr 0, no decay
        group["lr"], group["weight_decay"] = 0.0, 0.0
    records, ids = run.train_set.batch(1, cfg.trainer.prompts_per_step)
    metrics = train_step(run.models, StepBatch(ids, [r.answer for r in records]), cfg, run.spec, 1)
    assert seen, "no micro-batch of update 1 ran"
    for logp, old, mask in seen:
        assert torch.equal(logp[mask], old[mask])
    assert metrics["loss/clip_fraction"] == 0.0
    run.models.checker.close()


def _saved_tensors_per_step(tmp_path: Path, checkpointing: bool) -> tuple[int, bool]:
    cfg = _cfg(model={"gradient_checkpointing": checkpointing}, algorithm={"kl_coef": 0.0})
    run = build_run(cfg, tmp_path / f"gc{int(checkpointing)}")
    records, ids = run.train_set.batch(1, cfg.trainer.prompts_per_step)
    M, N = run.spec.policy_rollouts, run.spec.momentum_rollouts
    texts = [["\\boxed{4}" if j % 3 == 0 else "\\boxed{3}" for j in range(M)]] * len(ids)
    run.models.policy_engine = ScriptedEngine(run.models.tokenizer, texts, [[1.0] * M] * len(ids))
    run.models.momentum_engine = ScriptedEngine(
        run.models.tokenizer, [["\\boxed{3}"] * N] * len(ids), [[1.0] * N] * len(ids))
    count = [0]

    def pack(t):
        count[0] += 1
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        train_step(run.models, StepBatch(ids, [r.answer for r in records]), cfg, run.spec, 1)
    return count[0], run.models.policy.training


def test_gradient_checkpointing_acts_in_the_training_forward(tmp_path):
    plain, plain_mode = _saved_tensors_per_step(tmp_path, False)
    checkpointed, ckpt_mode = _saved_tensors_per_step(tmp_path, True)
    assert checkpointed < plain / 2, (checkpointed, plain)
    assert not plain_mode and not ckpt_mode  # back in eval mode for the next rollouts


@pytest.mark.parametrize(("device", "count", "local", "world", "expected"), [
    ("cpu", 2, None, 1, "cpu"),
    ("auto", 0, None, 1, "cpu"),
    ("auto", 2, None, 1, "cuda:0"),
    ("auto", 4, 3, 4, "cuda:3"),
    ("cuda", 4, 2, 4, "cuda:2"),
    ("cuda", 1, None, 1, "cuda:0"),
    ("cuda:1", 2, None, 1, "cuda:1"),
    ("cuda:1", 2, 0, 1, "cuda:1"),  # torchrun with one process: the named GPU
])
def test_device_selection(device, count, local, world, expected):
    from mgrpo.models.loading import select_device

    assert select_device(device, cuda_count=count, local_rank=local, world_size=world) == \
        torch.device(expected)


@pytest.mark.parametrize(("device", "count", "local", "world", "message"), [
    ("cuda", 0, None, 1, "CUDA is not available"),
    ("cuda:0", 0, None, 1, "CUDA is not available"),
    ("cuda:1", 8, 1, 8, "would put every rank on the same GPU"),
    ("cuda:2", 2, None, 1, "has 2 visible CUDA device"),
    ("cuda", 2, 3, 4, "resolves to cuda:3"),
    ("cuda:x", 2, None, 1, "must be an integer"),
])
def test_device_selection_refusals(device, count, local, world, message):
    from mgrpo.models.loading import select_device

    with pytest.raises(ValueError, match=message):
        select_device(device, cuda_count=count, local_rank=local, world_size=world)


def test_resume_on_other_hardware_says_so(tmp_path):
    from mgrpo.train.run.resume import warn_precision_change

    run = build_run(_cfg(), tmp_path / "run")
    saved = {"device": "cuda", "compute_dtype": "bfloat16", "master_dtype": "float32"}
    with pytest.warns(UserWarning, match=r"device cuda -> cpu, compute_dtype bfloat16 -> float32"):
        warn_precision_change(run, saved, tmp_path / "ckpt")
