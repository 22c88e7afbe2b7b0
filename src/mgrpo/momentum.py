"""The momentum (EMA) model of M-GRPO: an fp32 master copy plus a generator for sampling.

    theta_k <- m * theta_k + (1 - m) * theta_q        after every optimizer step

The master is kept in fp32 because a bf16 EMA at m = 0.99 rounds most updates away and
silently stops moving. The generator is an inference-only model object (no grads, no
optimizer state) that the momentum rollout engine samples from. When the policy itself is
fp32 the generator's parameters *are* the master (no second copy); otherwise the master is
a separate fp32 list copied into the generator after each update.

The pure update is `mgrpo.core.ema.ema_update_`; this module only owns the tensors around it
(the distributed wrapper, when there is one, works on local shards of the same lists).
"""

from __future__ import annotations

import copy

import torch

from mgrpo.core.ema import ema_update_


def _trainable(model: torch.nn.Module) -> list[torch.nn.Parameter]:
    return [p for p in model.parameters() if p.requires_grad]


class MomentumModel:
    """EMA copy of a policy. `generator` is what the momentum rollout engine samples from."""

    def __init__(self, policy: torch.nn.Module, generator_dtype: torch.dtype | None = None) -> None:
        """`generator_dtype`: cast the generator (e.g. bf16 over an fp32 policy master); the
        fp32 master is then a separate copy taken from the policy's own parameters."""
        self.generator = copy.deepcopy(policy)
        if generator_dtype is not None:
            self.generator.to(generator_dtype)
        self.generator.eval()
        # names of trainable policy params, in policy order (LoRA: adapters only)
        self.names = [n for n, p in policy.named_parameters() if p.requires_grad]
        gen_params = dict(self.generator.named_parameters())
        self._gen_tensors = [gen_params[n] for n in self.names]
        for p in self.generator.parameters():
            p.requires_grad_(False)
        self.shares_storage = all(t.dtype == torch.float32 for t in self._gen_tensors)
        if self.shares_storage:
            self.master = [t.data for t in self._gen_tensors]
        else:
            self.master = [p.detach().to(torch.float32).clone() for p in _trainable(policy)]

    @torch.no_grad()
    def update_(self, policy: torch.nn.Module, momentum: float) -> None:
        """One EMA step from the policy's current trainable parameters."""
        ema_update_(self.master, [p.detach() for p in _trainable(policy)], momentum)
        if not self.shares_storage:
            torch._foreach_copy_([t.data for t in self._gen_tensors], self.master)

    def state_dict(self) -> dict[str, torch.Tensor]:
        """fp32 master tensors by parameter name (for checkpoints)."""
        return {name: t.detach().cpu().contiguous() for name, t in zip(self.names, self.master)}

    @torch.no_grad()
    def load_state_dict(self, state: dict[str, torch.Tensor]) -> None:
        missing = [n for n in self.names if n not in state]
        if missing:
            raise ValueError(f"momentum state lacks {len(missing)} tensors, e.g. {missing[:3]}")
        for name, master in zip(self.names, self.master):
            master.copy_(state[name].to(master.dtype))
        if not self.shares_storage:
            torch._foreach_copy_([t.data for t in self._gen_tensors], self.master)


class ShardedMomentum:
    """The momentum model under FSDP2: an fp32 master with the policy's sharding (DTensors
    cloned from the sharded policy parameters), updated on LOCAL shards with no communication,
    plus an unsharded inference-only `generator` that the momentum engine samples from,
    refreshed by all-gathering the master one tensor at a time after each EMA update."""

    def __init__(self, policy: torch.nn.Module, generator: torch.nn.Module, ctx) -> None:
        from mgrpo.distributed import local_tensor

        self.ctx = ctx
        self.generator = generator
        self.generator.eval()
        for p in self.generator.parameters():
            p.requires_grad_(False)
        self.names = [n for n, p in policy.named_parameters() if p.requires_grad]
        self.sharded = [
            p.detach().to(torch.float32).clone() for p in _trainable(policy)
        ]  # DTensors, the policy's placements
        self.master = [local_tensor(t) for t in self.sharded]  # local shards (views)

    @torch.no_grad()
    def update_(self, policy: torch.nn.Module, momentum: float) -> None:
        from mgrpo.distributed import local_tensor

        ema_update_(self.master, [local_tensor(p.detach()) for p in _trainable(policy)], momentum)
        if momentum != 1.0:
            self.refresh()

    def refresh(self) -> None:
        from mgrpo.distributed import refresh_full_copy_

        refresh_full_copy_(self.ctx, self.generator, list(zip(self.names, self.sharded)),
                           "momentum generator refresh")

    def sharded_state(self) -> dict[str, torch.Tensor]:
        """name -> sharded fp32 master (for torch.distributed.checkpoint, loaded in place)."""
        return dict(zip(self.names, self.sharded))

    def state_dict(self) -> dict[str, torch.Tensor]:  # pragma: no cover - FSDP uses DCP
        raise RuntimeError("ShardedMomentum is saved with torch.distributed.checkpoint")
