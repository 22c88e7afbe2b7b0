"""Fixtures for trainer tests: a built tiny run and a scripted rollout engine."""

from __future__ import annotations

import torch

from mgrpo.rollout import RolloutBatch


class ScriptedEngine:
    """Returns rollouts whose text and entropies the test chooses (answers decide votes).

    `texts[b][j]` is the j-th response text for prompt b; `entropies[b][j]` its per-token
    entropy. Every call is recorded in `calls` as (num_prompts, n).
    """

    holds_weights_copy = False  # the RolloutEngine interface: reads no weights at all

    def __init__(self, tokenizer, texts, entropies):
        self.tokenizer = tokenizer
        self.texts = texts
        self.entropies = entropies
        self.calls = []

    def sync_weights(self):
        """Nothing to push (the RolloutEngine interface)."""

    def generate(self, prompt_ids, n, params):
        self.calls.append((len(prompt_ids), n))
        rows, ents = [], []
        for b in range(len(prompt_ids)):
            for j in range(n):
                ids = self.tokenizer(self.texts[b][j], add_special_tokens=False)["input_ids"]
                rows.append(ids + [self.tokenizer.eos_token_id])
                ents.append(self.entropies[b][j])
        width = max(len(r) for r in rows)
        R = len(rows)
        ids = torch.full((R, width), self.tokenizer.pad_token_id, dtype=torch.long)
        mask = torch.zeros(R, width, dtype=torch.bool)
        for i, r in enumerate(rows):
            ids[i, : len(r)] = torch.tensor(r)
            mask[i, : len(r)] = True
        entropies = torch.tensor(ents).unsqueeze(1).expand(R, width) * mask
        return RolloutBatch(
            prompt_index=torch.arange(len(prompt_ids)).repeat_interleave(n),
            response_ids=ids,
            response_mask=mask,
            logprobs=torch.zeros(R, width),
            entropies=entropies.float(),
            lengths=mask.sum(1),
            finish_reasons=["stop"] * R,
        )
