"""Per-call helpers of the `fast` engine's decode loop: the buffered (R, new) outputs, the
additive key mask, and the size of the fused weight copies."""

from __future__ import annotations

import torch
from torch import nn


def fused_entries(model: nn.Module) -> int:
    """Entries `fuse_weights` copies per call: q/k/v and gate/up weights of every layer."""
    total = 0
    for layer in model.base_model.layers:
        attn, mlp = layer.self_attn, layer.mlp
        for mod in (
            attn.q_proj,
            attn.k_proj,
            attn.v_proj,
            getattr(mlp, "gate_proj", None),
            getattr(mlp, "up_proj", None),
        ):
            weight = getattr(mod, "weight", None)
            total += weight.numel() if isinstance(weight, torch.Tensor) else 0
    return total


def additive_mask(valid: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    """0 where `valid`, -inf elsewhere, in `dtype` (SDPA would convert a boolean mask again in
    every layer)."""
    return torch.zeros(valid.shape, dtype=dtype, device=valid.device).masked_fill_(
        ~valid, float("-inf")
    )


class DecodeOutputs:
    """The (R, new) result tensors, written every `check_every` steps: per-token results of
    the live rows are buffered and scattered once per quantity at `flush(rows)`, with the
    rows' original indices, instead of four scatters per token. Tokens of rows already
    finished at a step are written as padding with zero log-prob / entropy / mask."""

    def __init__(self, r: int, new: int, pad_token_id: int, device: torch.device) -> None:
        self.tok = torch.full((r, new), pad_token_id, dtype=torch.long, device=device)
        self.lp = torch.zeros((r, new), dtype=torch.float32, device=device)
        self.ent = torch.zeros((r, new), dtype=torch.float32, device=device)
        self.mask = torch.zeros((r, new), dtype=torch.bool, device=device)
        self.pad = pad_token_id
        self.written = 0  # columns already flushed
        self.pending: list[tuple[torch.Tensor, ...]] = []

    def add(self, tok, logp, ent, active) -> None:
        self.pending.append((tok, logp, ent, active))

    def flush(self, rows: torch.Tensor) -> None:
        if not self.pending:
            return
        tok, logp, ent, active = (torch.stack(x, dim=1) for x in zip(*self.pending))  # (B, k)
        cols = slice(self.written, self.written + active.shape[1])
        self.tok[rows, cols] = torch.where(active, tok, self.pad)
        self.lp[rows, cols] = logp * active
        self.ent[rows, cols] = ent * active
        self.mask[rows, cols] = active
        self.written = cols.stop
        self.pending = []
