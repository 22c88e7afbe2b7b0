"""The momentum (EMA) model of M-GRPO: an fp32 master copy plus a module to sample from.

    theta_k <- m * theta_k + (1 - m) * theta_q        after every optimizer step

The master is kept in fp32 because a bf16 EMA at m = 0.99 rounds most updates away and
silently stops moving. Three layouts share one interface (`Momentum`):

- `MomentumModel` (one process or replicated data parallel): `generator` is an inference-only
  copy of the policy, built one tensor at a time (`precision.inference_twin`). When its parameters are fp32 they *are* the master (no second
  copy); otherwise the master is a separate fp32 list copied into the generator after each
  update.
- `ShardedMomentum` (FSDP2): the master has the policy's sharding (DTensors) and is updated on
  local shards with no communication; the unsharded `generator` is refreshed by gathering the
  master one tensor at a time.
- `mgrpo.train.layout.lora.LoraMomentum` (LoRA): the master covers the adapter tensors only and
  `generator` is the shared policy model, sampled with the momentum adapters swapped in.

Every layout: `names` (policy parameter names, in policy order), `master` (the fp32 tensors
updated in place: local shards under FSDP), `update_(policy, m)`, `state_dict()` /
`load_state_dict(state)` (name -> fp32 tensor), and `version` (a
`rollout.weight_sync.WeightVersion` bumped by every change of the sampled weights, so a vllm
momentum engine refuses to sample until they are pushed). The pure update is
`mgrpo.core.ema.ema_update_`.
"""

from __future__ import annotations

import torch
from torch import nn

from mgrpo.core.ema import ema_update_
from mgrpo.parallel.fsdp import local_tensor, refresh_full_copy_
from mgrpo.rollout.weight_sync import WeightVersion
from mgrpo.train.layout.precision import inference_twin


def _trainable(model: nn.Module) -> list[nn.Parameter]:
    return [p for p in model.parameters() if p.requires_grad]


def trainable_names(model: nn.Module) -> list[str]:
    """Names of the trainable parameters of `model`, in parameter order."""
    return [n for n, p in model.named_parameters() if p.requires_grad]


class Momentum:
    """The interface and shared code of every momentum layout.

    Subclasses set `names`, `master` and `generator`, and define `_sources(policy)` (the
    policy tensors the master follows, in `master` order) and, when the sampled module is
    not the master itself, `_publish()` (push the master into it).
    """

    names: list[str]
    master: list[torch.Tensor]
    generator: nn.Module
    kind = "momentum"  # names the layout in error messages

    def _sources(self, policy: nn.Module) -> list[torch.Tensor]:
        raise NotImplementedError

    def _publish(self) -> None:
        """Make the module sampled from reflect `master` (nothing when it reads it directly)."""

    @property
    def version(self) -> WeightVersion:
        """Changes of the momentum weights (bumped by `update_` and `load_state_dict`)."""
        if "_version" not in self.__dict__:
            self._version = WeightVersion()
        return self._version

    @torch.no_grad()
    def update_(self, policy: nn.Module, momentum: float) -> None:
        """One EMA step towards the policy's current parameters (m = 1: nothing changes)."""
        ema_update_(self.master, self._sources(policy), momentum)
        if momentum != 1.0:
            self._publish()
            self.version.bump()

    def state_dict(self) -> dict[str, torch.Tensor]:
        """fp32 master tensors by parameter name, on the CPU (for checkpoints)."""
        return {name: t.detach().cpu().contiguous() for name, t in zip(self.names, self.master)}

    @torch.no_grad()
    def load_state_dict(self, state: dict[str, torch.Tensor]) -> None:
        """Copy `state` (name -> tensor, any dtype) into the master, then publish it.

        Raises ValueError naming the missing tensors."""
        missing = [n for n in self.names if n not in state]
        if missing:
            raise ValueError(f"{self.kind} state lacks {len(missing)} tensors, e.g. {missing[:3]}")
        for name, master in zip(self.names, self.master):
            master.copy_(state[name].to(master.dtype))
        self._publish()
        self.version.bump()


class MomentumModel(Momentum):
    """EMA copy of a policy. `generator` is what the momentum rollout engine samples from."""

    def __init__(self, policy: nn.Module, generator_dtype: torch.dtype | None = None) -> None:
        """`generator_dtype`: cast the generator (e.g. bf16 over an fp32 policy master); the
        fp32 master is then a separate copy taken from the policy's own parameters."""
        # built one tensor at a time beside the policy (no deep copy of the policy in its own
        # dtype first); buffers such as RoPE's inv_freq keep their fp32 (`inference_twin`)
        dtype = generator_dtype or next(policy.parameters()).dtype
        self.generator = inference_twin(policy, device=next(policy.parameters()).device,
                                        dtype=dtype)
        # names of trainable policy params, in policy order (LoRA: adapters only)
        self.names = trainable_names(policy)
        gen_params = dict(self.generator.named_parameters())
        self._gen_tensors = [gen_params[n] for n in self.names]
        for p in self.generator.parameters():
            p.requires_grad_(False)
        self.shares_storage = all(t.dtype == torch.float32 for t in self._gen_tensors)
        if self.shares_storage:
            self.master = [t.data for t in self._gen_tensors]
        else:
            self.master = [p.detach().to(torch.float32).clone() for p in _trainable(policy)]

    def _sources(self, policy: nn.Module) -> list[torch.Tensor]:
        return [p.detach() for p in _trainable(policy)]

    def _publish(self) -> None:
        if not self.shares_storage:
            torch._foreach_copy_([t.data for t in self._gen_tensors], self.master)


class ShardedMomentum(Momentum):
    """The momentum model under FSDP2: an fp32 master with the policy's sharding (DTensors
    cloned from the sharded policy parameters), updated on LOCAL shards with no communication,
    plus an unsharded inference-only `generator` that the momentum engine samples from,
    refreshed by all-gathering the master one tensor at a time after each EMA update.
    Checkpoints go through torch.distributed.checkpoint (`sharded_state`), not `state_dict`."""

    def __init__(self, policy: nn.Module, generator: nn.Module, ctx) -> None:
        self.ctx = ctx
        self.generator = generator
        self.generator.eval()
        for p in self.generator.parameters():
            p.requires_grad_(False)
        self.names = trainable_names(policy)
        self.sharded = [
            p.detach().to(torch.float32).clone() for p in _trainable(policy)
        ]  # DTensors, the policy's placements
        self.master = [local_tensor(t) for t in self.sharded]  # local shards (views)

    def _sources(self, policy: nn.Module) -> list[torch.Tensor]:
        return [local_tensor(p.detach()) for p in _trainable(policy)]

    def _publish(self) -> None:
        self.refresh()

    def refresh(self) -> None:
        """Collective: gather the master into the generator, one tensor at a time."""
        refresh_full_copy_(self.ctx, self.generator, list(zip(self.names, self.sharded)),
                           "momentum generator refresh")

    def sharded_state(self) -> dict[str, torch.Tensor]:
        """name -> sharded fp32 master (for torch.distributed.checkpoint, loaded in place)."""
        return dict(zip(self.names, self.sharded))

    def state_dict(self) -> dict[str, torch.Tensor]:
        raise RuntimeError("ShardedMomentum is saved with torch.distributed.checkpoint")

    def load_state_dict(self, state: dict[str, torch.Tensor]) -> None:
        raise RuntimeError("ShardedMomentum is loaded with torch.distributed.checkpoint")
