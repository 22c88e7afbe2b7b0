"""Intrinsic reward of the Intuitor baseline: self-certainty.

    self_certainty(o) = mean_t KL(U || p_t) = mean_t [ -log V - (1/V) sum_j log p_t(j) ]

over the response tokens t of rollout o, with p_t = softmax(logits_t / T) under the policy
that generated it (Zhao et al., "Learning to Reason without External Rewards"). Computed
with right-padded teacher forcing in row chunks and lm_head applied in token chunks, so the
full (R, T, V) logits never exist at once. No gradient flows through the reward.
"""

from __future__ import annotations

import math

import torch

ROW_CHUNK = 4  # rollouts per forward
TOKEN_CHUNK = 256  # response positions per lm_head call


@torch.no_grad()
def self_certainty(
    model: torch.nn.Module,
    prompt_ids: list[list[int]],
    response_ids: torch.Tensor,  # (R, T)
    mask: torch.Tensor,  # (R, T) bool
    temperature: float,
) -> torch.Tensor:
    """(R,) fp32 self-certainty of each rollout; a rollout with no response token -> 0."""
    if len(prompt_ids) != response_ids.shape[0]:
        raise ValueError("prompt_ids must have one entry per rollout")
    if temperature <= 0:
        raise ValueError(f"temperature must be > 0, got {temperature}")
    device = next(model.parameters()).device
    decoder = model.get_decoder()
    head = model.get_output_embeddings()
    out = torch.zeros(response_ids.shape[0], dtype=torch.float32)
    for start in range(0, response_ids.shape[0], ROW_CHUNK):
        rows = range(start, min(start + ROW_CHUNK, response_ids.shape[0]))
        seqs, starts, lens = [], [], []
        for r in rows:
            resp = response_ids[r][mask[r]].tolist()
            seqs.append(list(prompt_ids[r]) + resp)
            starts.append(len(prompt_ids[r]))
            lens.append(len(resp))
        width = max(len(s) for s in seqs)
        ids = torch.zeros(len(seqs), width, dtype=torch.long)
        attn = torch.zeros(len(seqs), width, dtype=torch.long)
        for i, s in enumerate(seqs):
            ids[i, : len(s)] = torch.tensor(s)
            attn[i, : len(s)] = 1
        hidden = decoder(input_ids=ids.to(device), attention_mask=attn.to(device)).last_hidden_state
        for i, r in enumerate(rows):
            if lens[i] == 0:
                continue
            # positions whose next-token distribution generated response token t
            h = hidden[i, starts[i] - 1 : starts[i] - 1 + lens[i]]  # (T_i, H)
            total = 0.0
            for c in range(0, lens[i], TOKEN_CHUNK):
                logits = head(h[c : c + TOKEN_CHUNK]).float() / temperature  # (t, V)
                logp = torch.log_softmax(logits, dim=-1)
                total += float((-math.log(logits.shape[-1]) - logp.mean(dim=-1)).sum())
            out[r] = total / lens[i]
    return out
