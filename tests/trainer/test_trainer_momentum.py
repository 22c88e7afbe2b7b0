"""One momentum interface for the three layouts; momentum.py and distributed.py import
without a cycle (distributed never imports momentum)."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from mgrpo.models.tiny import build_tiny_model
from mgrpo.models.tokenizer import build_char_tokenizer
from mgrpo.train.layout.momentum import Momentum, MomentumModel, ShardedMomentum

TOK = build_char_tokenizer()
SRC = Path(__file__).resolve().parents[2] / "src" / "mgrpo"


def test_every_layout_is_a_momentum() -> None:
    from mgrpo.train.layout.lora import LoraMomentum

    assert issubclass(MomentumModel, Momentum) and issubclass(ShardedMomentum, Momentum)
    assert issubclass(LoraMomentum, Momentum)


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_momentum_model_update_and_state_round_trip(dtype) -> None:
    policy = build_tiny_model(TOK, seed=0, dtype=dtype)
    momentum = MomentumModel(policy)
    assert momentum.shares_storage == (dtype == torch.float32)
    with torch.no_grad():
        for p in policy.parameters():
            p.add_(1.0)
    before = [t.clone() for t in momentum.master]
    momentum.update_(policy, 0.5)
    for m, b, p in zip(momentum.master, before, policy.parameters(), strict=True):
        torch.testing.assert_close(m, 0.5 * b + 0.5 * p.detach().float())
    gen = dict(momentum.generator.named_parameters())
    for name, m in zip(momentum.names, momentum.master, strict=True):
        assert torch.equal(gen[name], m.to(dtype))  # the generator sees the master
    state = momentum.state_dict()
    fresh = MomentumModel(build_tiny_model(TOK, seed=1, dtype=dtype))
    fresh.load_state_dict(state)
    gen = dict(fresh.generator.named_parameters())
    for name, m in zip(fresh.names, fresh.master, strict=True):
        assert torch.equal(m, state[name]) and torch.equal(gen[name], m.to(dtype))
    with pytest.raises(ValueError, match="momentum state lacks 1 tensors"):
        fresh.load_state_dict({k: v for k, v in list(state.items())[1:]})
