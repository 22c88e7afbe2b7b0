"""Intuitor's self-certainty reward against a naive full-logits reference."""

from __future__ import annotations

import math

import torch

from mgrpo.models.tiny import build_tiny_model
from mgrpo.models.tokenizer import build_char_tokenizer
from mgrpo.rollout.scoring import self_certainty


def test_self_certainty_matches_naive_reference():
    tok = build_char_tokenizer()
    model = build_tiny_model(tok, seed=3).eval()
    gen = torch.Generator().manual_seed(0)
    prompts = [[5, 6, 7], [8, 9], [10, 11, 12, 13], [14], [15, 16], [17, 18, 19]]
    lengths = [4, 1, 6, 0, 3, 6]
    ids = torch.randint(20, 90, (len(prompts), 6), generator=gen)
    mask = torch.arange(6).unsqueeze(0) < torch.tensor(lengths).unsqueeze(1)
    got = self_certainty(model, prompts, ids, mask, temperature=1.3)
    for r, (p, n) in enumerate(zip(prompts, lengths)):
        if n == 0:
            assert got[r] == 0
            continue
        seq = torch.tensor([p + ids[r, :n].tolist()])
        with torch.no_grad():
            logits = model(seq).logits[0, len(p) - 1 : len(p) - 1 + n].float() / 1.3
        want = (-math.log(logits.shape[-1]) - torch.log_softmax(logits, -1).mean(-1)).mean()
        torch.testing.assert_close(got[r], want, rtol=1e-5, atol=1e-6)
