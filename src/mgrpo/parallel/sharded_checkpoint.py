"""Sharded checkpoints of an FSDP2 run (``torch.distributed.checkpoint``, DCP): every rank
writes and reads its own shards of the policy, the optimizer and the momentum master; a load
reshards to the current world size. Where the shards go (`step-N/sharded/`) and what else a
checkpoint holds is the run directory's description, `mgrpo.train.run.run_dir`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from torch import nn

from mgrpo.parallel.distributed import DistContext, collective


def _dcp_state(policy: nn.Module, optimizer: torch.optim.Optimizer, momentum: Any) -> dict[str, Any]:
    # lazy, start-up: only multi-process runs need it
    from torch.distributed.checkpoint.state_dict import get_state_dict

    model_sd, optim_sd = get_state_dict(policy, optimizer)
    state: dict[str, Any] = {"model": model_sd, "optim": optim_sd}
    if momentum is not None:
        state["momentum"] = momentum.sharded_state()
    return state


def save_sharded(ctx: DistContext, directory: Path, policy: nn.Module,
                 optimizer: torch.optim.Optimizer, momentum: Any) -> None:
    """Collective: every rank writes its shards of policy / optimizer / momentum master into
    `directory` (torch.distributed.checkpoint; rank 0 writes the metadata). `directory` must
    be on a filesystem every rank sees (multi-node: shared storage)."""
    # lazy, start-up: only multi-process runs need it
    import torch.distributed.checkpoint as dcp

    with collective(ctx, "sharded checkpoint save"):
        dcp.save(_dcp_state(policy, optimizer, momentum), checkpoint_id=str(directory))


def load_sharded(ctx: DistContext, source: Path, policy: nn.Module,
                 optimizer: torch.optim.Optimizer, momentum: Any) -> None:
    """Collective: load the shards in `source`, resharding to this world size if it differs."""
    # lazy, start-up: only multi-process runs need it
    import torch.distributed.checkpoint as dcp
    from torch.distributed.checkpoint.state_dict import set_state_dict

    state = _dcp_state(policy, optimizer, momentum)
    with collective(ctx, "sharded checkpoint load"):
        dcp.load(state, checkpoint_id=str(source))
        set_state_dict(policy, optimizer, model_state_dict=state["model"],
                       optim_state_dict=state["optim"])
    if momentum is not None:  # loaded in place into the master DTensors
        momentum.refresh()
