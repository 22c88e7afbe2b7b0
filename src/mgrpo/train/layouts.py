"""How a run lays out its models: which copies exist, in which dtype, and what they share.

M-GRPO trains one policy and samples from two more models (the momentum model, and, with
kl_coef > 0, a frozen reference). Four layouts build them, each behind `ModelLayout`:

| layout          | policy (trained)        | momentum           | reference      | policy copy   |
|-----------------|-------------------------|--------------------|----------------|---------------|
| `FullLayout`    | full weights, one dtype | `MomentumModel`    | frozen copy    | none          |
| `MixedLayout`   | fp32 master, autocast   | fp32 + bf16 copy   | bf16 copy      | bf16 copy     |
| `LoraLayout`    | adapters, frozen base   | `LoraMomentum`     | adapters off   | none (shared) |
| `ShardedLayout` | FSDP2 shards, fp32      | `ShardedMomentum`  | FSDP2, bf16    | unsharded bf16|

A layout is used in three stages: `adapt(policy)` changes the policy before anything copies
it (LoRA: adapters in), `build(policy)` makes the momentum model, the reference and the
generator copies (`train.types.Roles`, the layout's part of `StepModels`), and `momentum_engine(engine)` wraps the momentum engine where
sampling needs a context. For checkpoints it names the module written as the HF directory
(`export_model`) and the extra tensor files (`checkpoint_tensors`), and restores the trained
weights from a checkpoint (`load_weights`).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from torch import nn

from mgrpo.config import Config
from mgrpo.parallel import distributed as D
from mgrpo.train.checkpoint import load_tensors
from mgrpo.train.lora import (
    LoraExport,
    LoraMomentum,
    ScopedEngine,
    apply_lora,
    load_trainable_state,
    trainable_state,
)
from mgrpo.train.momentum import MomentumModel, ShardedMomentum
from mgrpo.train.precision import Precision, copy_refresher
from mgrpo.train.types import Roles

MASTER_FILE = "master.safetensors"  # fp32 master weights of a mixed-precision checkpoint


def inference_copy(model: nn.Module, dtype: torch.dtype) -> nn.Module:
    """A frozen, eval-mode copy of `model` in `dtype` beside it (generator / reference),
    built one tensor at a time (`distributed.inference_twin`: no full copy in the source
    dtype is ever made)."""
    return D.inference_twin(model, device=next(model.parameters()).device, dtype=dtype)


class ModelLayout:
    """One way of building the policy's companions; subclasses override `build` and, where
    they differ from the full-weight default, the other hooks."""

    frozen_embeddings = False  # True: the input embeddings do not train (LoRA)

    def __init__(self, cfg: Config, precision: Precision, ctx: D.DistContext, *,
                 with_momentum: bool) -> None:
        self.cfg, self.precision, self.ctx = cfg, precision, ctx
        self.with_momentum = with_momentum
        self.with_reference = cfg.algorithm.kl_coef > 0
        self.roles = Roles()
        self.lora_export: LoraExport | None = None  # LoRA: what checkpoints export

    def adapt(self, policy: nn.Module) -> None:
        """Change the policy in place before anything copies it (default: nothing)."""

    def build(self, policy: nn.Module) -> Roles:
        """The momentum model, reference and generator copies for `policy`."""
        raise NotImplementedError

    def momentum_engine(self, engine: Any) -> Any:
        """The engine the momentum rollouts sample through (default: `engine` itself)."""
        return engine

    def export_model(self, policy: nn.Module) -> Any:
        """What a checkpoint's HF directory is written from (`save_pretrained`)."""
        return self.roles.policy_full or policy

    def checkpoint_tensors(self, policy: nn.Module) -> dict[str, dict[str, torch.Tensor]]:
        """Extra tensor files of a checkpoint (file name -> name -> tensor); default none."""
        return {}

    @torch.no_grad()
    def load_weights(self, policy: nn.Module, ckpt: Path) -> None:
        """Restore the trained weights from checkpoint directory `ckpt`: the fp32 master when
        the checkpoint has one (written by mixed precision), else its HF weights (written by
        full weights; a resume may resolve `auto` precision differently). A tied `lm_head`
        may be absent. Raises ValueError naming the file and the first mismatched names."""
        if (ckpt / MASTER_FILE).is_file():
            master = load_tensors(ckpt / MASTER_FILE)
            names = [n for n, _ in policy.named_parameters()]
            if sorted(master) != sorted(names):
                raise ValueError(f"{ckpt / MASTER_FILE}: master weights do not match the model "
                                 f"(missing {sorted(set(names) - set(master))[:3]}, "
                                 f"unexpected {sorted(set(master) - set(names))[:3]})")
            for name, p in policy.named_parameters():
                p.copy_(master[name].to(p.dtype))
            return
        weights = {}
        for shard in sorted(ckpt.glob("model*.safetensors")):
            weights.update(load_tensors(shard))
        missing, unexpected = policy.load_state_dict(weights, strict=False)
        tie = getattr(policy.config, "tie_word_embeddings", False)
        tied = {k for k in missing if "lm_head" in k and tie}
        if set(missing) - tied or unexpected:
            raise ValueError(f"{ckpt}: policy weights do not match the model "
                             f"(missing {sorted(set(missing) - tied)[:3]}, "
                             f"unexpected {unexpected[:3]})")


class FullLayout(ModelLayout):
    """Full weights in one dtype on one process (or replicated data parallel): the policy
    samples itself; the momentum generator is a deep copy whose fp32 weights are the EMA
    master; the reference a frozen copy."""

    def build(self, policy: nn.Module) -> Roles:
        if self.with_reference:
            self.roles.reference = inference_copy(policy, self.precision.compute)
        if self.with_momentum:
            self.roles.momentum = MomentumModel(policy)
        return self.roles


class MixedLayout(ModelLayout):
    """fp32 master trains under autocast; bf16 copies generate, score and refer. The policy
    copy is refreshed from the master after every optimizer step (it always equals the master
    cast to bf16); checkpoints write that copy as the HF directory and the master beside it."""

    def build(self, policy: nn.Module) -> Roles:
        compute, roles = self.precision.compute, self.roles
        if self.with_reference:
            roles.reference = inference_copy(policy, compute)
        roles.policy_full = inference_copy(policy, compute)
        roles.after_update = copy_refresher(policy, roles.policy_full)
        roles.train_autocast = compute
        if self.with_momentum:
            roles.momentum = MomentumModel(policy, generator_dtype=compute)
        return roles

    def checkpoint_tensors(self, policy: nn.Module) -> dict[str, dict[str, torch.Tensor]]:
        master = {n: p.detach().cpu().contiguous() for n, p in policy.named_parameters()}
        return {MASTER_FILE: master}


class LoraLayout(ModelLayout):
    """Adapters train; the base is shared by policy, momentum (adapters swapped in per call)
    and reference (adapters disabled), see `mgrpo.train.lora`."""

    frozen_embeddings = True

    def adapt(self, policy: nn.Module) -> None:
        peft_model = apply_lora(policy, self.cfg.model.lora)
        for p in policy.parameters():  # adapters: the master dtype (peft makes them fp32)
            if p.requires_grad:
                p.data = p.data.to(self.precision.master)
        self.lora_export = LoraExport(policy, peft_model, self.cfg.model.lora.export)
        if self.with_reference:
            self.roles.reference = policy
            self.roles.reference_scope = peft_model.disable_adapter

    def build(self, policy: nn.Module) -> Roles:
        if self.with_momentum:
            self.roles.momentum = LoraMomentum(policy)
        return self.roles

    def momentum_engine(self, engine: Any) -> Any:
        assert isinstance(self.roles.momentum, LoraMomentum)
        return ScopedEngine(engine, self.roles.momentum.swapped_in)  # same model, momentum adapters

    def export_model(self, policy: nn.Module) -> Any:
        return self.lora_export

    def checkpoint_tensors(self, policy: nn.Module) -> dict[str, dict[str, torch.Tensor]]:
        return {"lora.safetensors": trainable_state(policy)}

    def load_weights(self, policy: nn.Module, ckpt: Path) -> None:
        """The adapters from the checkpoint; the base comes from `model.name`."""
        load_trainable_state(policy, load_tensors(ckpt / "lora.safetensors"), ckpt)


class ShardedLayout(ModelLayout):
    """FSDP2: policy and reference sharded, unsharded bf16 generator copies for rollouts
    (`mgrpo.parallel.distributed.shard_run_models`); the policy copy is all-gathered after
    every optimizer step. Checkpoints go through torch.distributed.checkpoint."""

    def build(self, policy: nn.Module) -> Roles:
        sharded = D.shard_run_models(self.ctx, policy, gen_dtype=self.precision.compute,
                                     with_reference=self.with_reference,
                                     with_momentum=self.with_momentum,
                                     device=self.precision.device)
        roles = self.roles
        roles.reference, roles.policy_full = sharded.reference, sharded.policy_full
        if sharded.momentum_generator is not None:
            roles.momentum = ShardedMomentum(policy, sharded.momentum_generator, self.ctx)
        roles.after_update = D.policy_refresher(self.ctx, policy, roles.policy_full)
        return roles

    def load_weights(self, policy: nn.Module, ckpt: Path) -> None:
        raise RuntimeError("sharded checkpoints load through torch.distributed.checkpoint "
                           "(mgrpo.parallel.distributed.load_sharded)")


def pick_layout(cfg: Config, precision: Precision, ctx: D.DistContext, *,
                with_momentum: bool) -> ModelLayout:
    """The layout for this run: FSDP, else LoRA, else mixed precision, else full weights.
    (LoRA with FSDP is refused before the model loads.)"""
    if ctx.fsdp:
        kind: type[ModelLayout] = ShardedLayout
    elif cfg.model.lora.r > 0:
        kind = LoraLayout
    elif precision.mixed:
        kind = MixedLayout
    else:
        kind = FullLayout
    return kind(cfg, precision, ctx, with_momentum=with_momentum)
