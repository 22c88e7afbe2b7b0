"""Intrinsic reward of the Intuitor baseline: self-certainty.

    self_certainty(o) = mean_t KL(U || p_t) = mean_t [ -log V - (1/V) sum_j log p_t(j) ]

over the response tokens t of rollout o, with p_t = softmax(logits_t / T) under the policy
that generated it (Zhao et al., "Learning to Reason without External Rewards"). Computed by
teacher forcing in row chunks with lm_head applied in token chunks, so the full (R, T, V)
logits never exist at once. No gradient flows through the reward.
"""

from __future__ import annotations

import math

import torch

from mgrpo.rollout.scoring import build_scoring_inputs, lm_head_of

ROW_CHUNK = 4  # rollouts per forward
TOKEN_CHUNK = 256  # response tokens per lm_head call


@torch.no_grad()
def self_certainty(
    model: torch.nn.Module,
    prompt_ids: list[list[int]],
    response_ids: torch.Tensor,  # (R, T)
    mask: torch.Tensor,  # (R, T) bool
    temperature: float,
) -> torch.Tensor:
    """(R,) fp32 self-certainty of each rollout; a rollout with no response token -> 0.

    Inputs are laid out exactly as for `score_responses` (`build_scoring_inputs`: left-padded
    prompt, then the response), so the hidden state at column P - 1 + t predicts token t.
    """
    if len(prompt_ids) != response_ids.shape[0]:
        raise ValueError("prompt_ids must have one entry per rollout")
    if temperature <= 0:
        raise ValueError(f"temperature must be > 0, got {temperature}")
    head = lm_head_of(model)
    device = head.weight.device
    mask = mask.bool()
    out = torch.zeros(response_ids.shape[0], dtype=torch.float32)
    for start in range(0, response_ids.shape[0], ROW_CHUNK):
        rows = slice(start, start + ROW_CHUNK)
        m = mask[rows].to(device)
        if not bool(m.any()):
            continue
        input_ids, attention, position_ids, width = build_scoring_inputs(
            prompt_ids[rows], response_ids[rows].masked_fill(~mask[rows], 0), m,
            pad_token_id=0, device=device,
        )
        hidden = model.base_model(
            input_ids=input_ids, attention_mask=attention, position_ids=position_ids,
            use_cache=False,
        ).last_hidden_state  # (r, P+T, H)
        h = hidden[:, width - 1 : width - 1 + m.shape[1]][m]  # (N, H) states of real tokens
        per_token = torch.cat([
            -math.log(head.out_features)
            - torch.log_softmax(head(h[c : c + TOKEN_CHUNK]).float() / temperature, -1).mean(-1)
            for c in range(0, h.shape[0], TOKEN_CHUNK)
        ])  # (N,) KL(U || p_t)
        row_of = m.nonzero()[:, 0]  # (N,) row of each real token
        sums = torch.zeros(m.shape[0], device=device).index_add_(0, row_of, per_token)
        out[rows] = (sums / m.sum(1).clamp_min(1)).cpu()
    return out
