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
generator copies (`train.types.Roles`, the layout's part of `StepModels`), and
`momentum_engine(engine)` wraps the momentum engine where sampling needs a context. What a
checkpoint of each layout holds, and how it is restored, is `mgrpo.train.run.resume`.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from mgrpo.config import Config
from mgrpo.parallel import distributed as D
from mgrpo.parallel.fsdp import device_mesh, policy_refresher, shard_model
from mgrpo.rollout import RolloutEngine
from mgrpo.train.layout.lora import (
    LoraExport,
    LoraMomentum,
    ScopedEngine,
    apply_lora,
)
from mgrpo.train.layout.momentum import MomentumModel, ShardedMomentum
from mgrpo.train.layout.precision import Precision, copy_refresher, inference_twin
from mgrpo.train.types import Roles


def inference_copy(model: nn.Module, dtype: torch.dtype) -> nn.Module:
    """A frozen, eval-mode copy of `model` in `dtype` beside it (generator / reference),
    built one tensor at a time (`precision.inference_twin`: no full copy in the source
    dtype is ever made)."""
    return inference_twin(model, device=next(model.parameters()).device, dtype=dtype)


class ModelLayout:
    """One way of building the policy's companions; subclasses override `build` and, where
    they differ from the full-weight default, the other hooks."""

    kind = "layout"
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

    def momentum_engine(self, engine: RolloutEngine) -> RolloutEngine | ScopedEngine:
        """The engine the momentum rollouts sample through (default: `engine` itself)."""
        return engine


class FullLayout(ModelLayout):
    """Full weights in one dtype on one process (or replicated data parallel): the policy
    samples itself; the momentum generator is a deep copy whose fp32 weights are the EMA
    master; the reference a frozen copy."""

    kind = "full"  # names the layout (memory pre-flight, messages)

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

    kind = "mixed"  # names the layout (memory pre-flight, messages)

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


class LoraLayout(ModelLayout):
    """Adapters train; the base is shared by policy, momentum (adapters swapped in per call)
    and reference (adapters disabled), see `mgrpo.train.layout.lora`."""

    kind = "lora"  # names the layout (memory pre-flight, messages)

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

    def momentum_engine(self, engine: RolloutEngine) -> RolloutEngine | ScopedEngine:
        assert isinstance(self.roles.momentum, LoraMomentum)
        return ScopedEngine(engine, self.roles.momentum.swapped_in)  # same model, momentum adapters


class ShardedLayout(ModelLayout):
    """FSDP2: policy and reference sharded, unsharded bf16 generator copies for rollouts
    (`shard_run_models`); the policy copy is all-gathered after every optimizer step.
    Checkpoints go through torch.distributed.checkpoint."""

    kind = "sharded"  # names the layout (memory pre-flight, messages)

    def build(self, policy: nn.Module) -> Roles:
        sharded = shard_run_models(self.ctx, policy, gen_dtype=self.precision.compute,
                                   with_reference=self.with_reference,
                                   with_momentum=self.with_momentum,
                                   device=self.precision.device)
        roles = self.roles
        roles.reference, roles.policy_full = sharded.reference, sharded.policy_full
        if sharded.momentum_generator is not None:
            roles.momentum = ShardedMomentum(policy, sharded.momentum_generator, self.ctx)
        roles.after_update = policy_refresher(self.ctx, policy, roles.policy_full)
        return roles


@dataclass
class ShardedModels:
    """What `shard_run_models` returns (all on this rank)."""

    policy: nn.Module  # sharded (DTensor params, fp32 master)
    policy_full: nn.Module  # unsharded generator copy in the generation dtype
    reference: nn.Module | None  # sharded, generation dtype, frozen
    momentum_generator: nn.Module | None  # unsharded; `ShardedMomentum` wraps it


def shard_run_models(
    ctx: D.DistContext,
    policy: nn.Module,
    *,
    gen_dtype: torch.dtype,
    with_reference: bool,
    with_momentum: bool,
    device: torch.device | None = None,
) -> ShardedModels:
    """Build the unsharded generators and the reference from `policy`, then shard. The
    momentum master is `mgrpo.train.layout.momentum.ShardedMomentum(policy, momentum_generator, ctx)`.

    `policy` is the full fp32 model as loaded, best on the CPU (`device` is where the run
    computes; None = where `policy` is). Start-up memory per rank on `device`: each generator
    twin is materialised there one parameter at a time (`inference_twin`); the reference is
    cast on the host and sharded layer by layer (FSDP2 moves one decoder layer's full tensors
    to `device`, then keeps this rank's shard); the policy likewise. No rank ever holds a
    full fp32 copy on `device`: the peak is the generators plus one full layer in flight.

    Memory per rank once built (P params, W ranks): policy master fp32 4P/W + AdamW 8P/W +
    grads 4P/W, reference 2P/W (bf16), momentum master 4P/W, generator copies 2P each (bf16,
    unsharded).
    """
    target = device if device is not None else next(policy.parameters()).device
    mesh = device_mesh(ctx, target)  # shards on the run's device, not the current accelerator
    policy_full = inference_twin(policy, device=target, dtype=gen_dtype)
    momentum_generator = (
        inference_twin(policy, device=target, dtype=gen_dtype) if with_momentum else None
    )
    reference = None
    if with_reference:  # host-side cast copy, sharded (and moved) layer by layer
        reference = inference_twin(policy, device=next(policy.parameters()).device,
                                   dtype=gen_dtype)
        shard_model(reference, ctx, param_dtype=gen_dtype, trainable=False, mesh=mesh)
    shard_model(policy, ctx, param_dtype=gen_dtype, trainable=True, mesh=mesh)
    return ShardedModels(policy, policy_full, reference, momentum_generator)


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
