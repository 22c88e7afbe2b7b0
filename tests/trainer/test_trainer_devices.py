"""The step's device rule (module docstring of `mgrpo.train.step`) on a CPU-only machine.

`SecondDevice` is a TorchFunctionMode that puts chosen tensors on a second device "D": they
report `device == meta`, every tensor computed from them is on D, a factory call with
`device=meta` makes a D tensor, and `.cpu()` / `.to("cpu")` / `.to(meta)` are transfers
(copies). As PyTorch does between CPU and CUDA, an op that mixes D tensors with non-scalar
CPU tensors raises, except a CPU index or value into a D tensor (`t[i]`, `t[i] = v`, copy_).
The data stays on the CPU, so the real step (decoding, voting, autograd, AdamW) runs on it.
The model, its copies and the engine doubles' rollouts are placed on D, as on a GPU.
"""

from __future__ import annotations

import pytest
import torch
from torch.overrides import TorchFunctionMode
from torch.utils._pytree import tree_flatten
from torch.utils.weak import WeakTensorKeyDictionary

from conftest import ScriptedEngine
from mgrpo.config import config_from_dict, load_recipe
from mgrpo.rollout import RolloutBatch
from mgrpo.train.run.trainer import build_run
from mgrpo.train.step import StepBatch, train_step

FAKE = torch.device("meta")
_INDEXING = {torch.Tensor.__getitem__, torch.Tensor.__setitem__, torch.Tensor.index_put_,
             torch.Tensor.index_put, torch.Tensor.copy_}


def _is_fake(device) -> bool:
    return device is not None and not isinstance(device, torch.dtype) and torch.device(device) == FAKE


class SecondDevice(TorchFunctionMode):
    def __init__(self) -> None:
        super().__init__()
        self.tags = WeakTensorKeyDictionary()
        self.mixes = 0

    def put(self, t: torch.Tensor) -> torch.Tensor:
        self.tags[t] = True
        return t

    def on(self, t) -> bool:
        return isinstance(t, torch.Tensor) and t in self.tags

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = dict(kwargs or {})
        if func == torch.Tensor.device.__get__:
            return FAKE if self.on(args[0]) else func(*args)
        if func is torch.Tensor.cpu:
            out = func(*args, **kwargs)
            return out.clone() if self.on(args[0]) else out
        if func is torch.Tensor.to:
            target = kwargs.get("device", next((a for a in args[1:] if isinstance(a, (str, torch.device))), None))
            if target is not None:
                if _is_fake(target):  # to D: a copy on D (no-op when already there)
                    rest = [a for a in args[1:] if not isinstance(a, (str, torch.device))]
                    kw = {k: v for k, v in kwargs.items() if k != "device"}
                    src = args[0]
                    out = src.to(*rest, **kw) if (rest or kw) else src
                    return out if self.on(src) and out is src else self.put(out.clone() if out is src else out)
                if torch.device(target).type == "cpu" and self.on(args[0]):
                    out = func(*args, **kwargs)
                    return out.clone() if out is args[0] else out
        made_on_fake = _is_fake(kwargs.get("device"))
        if made_on_fake:
            kwargs["device"] = "cpu"
        tensors = [t for t in tree_flatten((args, kwargs))[0] if isinstance(t, torch.Tensor)]
        on_d = any(self.on(t) for t in tensors)
        cpu = [t for t in tensors if not self.on(t) and t.dim() > 0]
        if on_d and cpu and not (func in _INDEXING and self.on(args[0])):
            self.mixes += 1
            raise RuntimeError(
                f"Expected all tensors to be on the same device, but found at least two "
                f"devices, {FAKE} and cpu! ({getattr(func, '__name__', func)})"
            )
        out = func(*args, **kwargs)
        if on_d or made_on_fake:
            for t in tree_flatten(out)[0]:
                if isinstance(t, torch.Tensor):
                    self.put(t)
        return out


class OnDevice:
    """An engine double whose rollouts come back on D (as a real engine's do on the GPU)."""

    holds_weights_copy = False  # the RolloutEngine interface

    def __init__(self, engine, mode: SecondDevice) -> None:
        self.engine, self.mode = engine, mode

    def sync_weights(self) -> None:
        self.engine.sync_weights()

    def generate(self, *args, **kwargs) -> RolloutBatch:
        out = self.engine.generate(*args, **kwargs)
        fields = {k: v for k, v in vars(out).items()}
        for key, value in fields.items():
            if isinstance(value, torch.Tensor):
                fields[key] = self.mode.put(value.clone())
        return RolloutBatch(**fields)


def _place_on_device(run, mode: SecondDevice) -> None:
    models = run.models
    seen = set()
    for model in (models.policy, models.reference, models.policy_full,
                  getattr(models.momentum, "generator", None)):
        if model is None or id(model) in seen:
            continue
        seen.add(id(model))
        for t in [*model.parameters(), *model.buffers()]:
            mode.put(t)
        for p in model.parameters():  # gradients land on the parameter's device
            if p.requires_grad:
                p.register_post_accumulate_grad_hook(lambda p: mode.tags.__setitem__(p.grad, True))
    if models.momentum is not None:
        for t in models.momentum.master:
            mode.put(t)


@pytest.mark.parametrize("preset, updates", [("m-grpo", 1), ("srt", 1), ("srt", 2),
                                             ("ttrl", 1), ("intuitor", 2), ("grpo", 1)])
def test_step_keeps_rollout_statistics_on_the_rollouts_device(tmp_path, preset, updates):
    data = load_recipe("tiny")
    data["algorithm"]["preset"] = preset
    data["trainer"].update(progress=False, updates_per_step=updates, micro_batch_size=4)
    data["validation"] = {"data": None}
    cfg = config_from_dict(data)
    run = build_run(cfg, tmp_path / "run")
    assert run.models.reference is not None  # kl_coef > 0: the logp_ref buffer is used
    records, ids = run.train_set.batch(1, cfg.trainer.prompts_per_step)
    G = run.spec.policy_rollouts + run.spec.vote_only_rollouts
    N = run.spec.momentum_rollouts
    texts = [["\\boxed{4}" if j % 4 == 3 else "\\boxed{3}" for j in range(G)]] * len(ids)
    ents = [[1.0 + 0.01 * j for j in range(G)]] * len(ids)
    mode = SecondDevice()
    run.models.policy_engine = OnDevice(ScriptedEngine(run.models.tokenizer, texts, ents), mode)
    if N:
        run.models.momentum_engine = OnDevice(ScriptedEngine(
            run.models.tokenizer, [["\\boxed{3}"] * N] * len(ids), [[1.0] * N] * len(ids)), mode)
    _place_on_device(run, mode)
    before = [p.detach().clone() for p in run.models.policy.parameters()]
    answers = ["3"] * len(ids) if preset == "grpo" else [r.answer for r in records]
    with mode:
        metrics = train_step(run.models, StepBatch(ids, answers), cfg, run.spec, 1)
    assert mode.mixes == 0
    assert metrics["loss/pg"] == metrics["loss/pg"]  # finite, computed
    moved = [not torch.equal(a, b) for a, b in zip(before, run.models.policy.parameters())]
    assert any(moved), "the update did not reach the weights"
    assert all(not mode.on(v) for v in metrics.values())  # metrics are host values


def test_the_device_double_refuses_what_cuda_refuses():
    mode = SecondDevice()
    d = mode.put(torch.arange(4))
    host = torch.zeros(4)
    with mode:
        with pytest.raises(RuntimeError, match="same device"):
            torch.isfinite(host) | (d > 1)  # a CPU and a D operand of the same shape
        with pytest.raises(RuntimeError, match="same device"):
            host[d[:2]]  # a D index into a CPU tensor
        assert d[torch.tensor([0, 1])].device == FAKE  # a CPU index into a D tensor is fine
        assert (d + torch.tensor(1)).device == FAKE  # 0-dim CPU scalars mix, as on CUDA
        assert d.cpu().device.type == "cpu" and host.to(FAKE).device == FAKE
        assert torch.zeros(2, device=d.device).device == FAKE


@pytest.mark.gpu
@pytest.mark.parametrize("preset", ["m-grpo", "srt", "ttrl", "intuitor", "grpo"])
def test_one_real_step_per_preset_on_cuda(tmp_path, preset):
    if not torch.cuda.is_available():
        pytest.skip("needs CUDA")
    data = load_recipe("tiny")
    data["algorithm"]["preset"] = preset
    data["model"]["device"] = "cuda"
    data["trainer"].update(progress=False, updates_per_step=2)
    data["validation"] = {"data": None}
    cfg = config_from_dict(data)
    run = build_run(cfg, tmp_path / "run")
    assert run.models.train_autocast == torch.bfloat16  # auto on CUDA: bf16 over an fp32 master
    records, ids = run.train_set.batch(1, cfg.trainer.prompts_per_step)
    answers = ["3"] * len(ids) if preset == "grpo" else [r.answer for r in records]
    metrics = train_step(run.models, StepBatch(ids, answers), cfg, run.spec, 1)
    assert metrics["grad_norm"] == metrics["grad_norm"]
    run.models.checker.close()
