"""The reward registry and every built-in reward: (B, M) rewards of the policy train rollouts.

A preset names its reward (`AlgorithmSpec.reward`); `REWARDS[name](RewardInputs)` returns a
(B, M) fp32 tensor on the rollouts' device D. A new reward is one function of
`RewardInputs` and one entry in `REWARDS`; nothing else in the step changes.

| name             | presets          | reward of rollout j of prompt b                     |
|------------------|------------------|-----------------------------------------------------|
| `vote`           | m-grpo, srt, ttrl| 1 if its answer is equivalent to the majority vote  |
| `truth`          | grpo             | 1 if its answer is equivalent to the ground truth   |
| `self_certainty` | intuitor         | mean_t KL(U || p_t) under the policy that sampled it|

A missing target (no vote label, no parsed answer) gives 0. Self-certainty (Zhao et al.,
"Learning to Reason without External Rewards"):

    self_certainty(o) = mean_t KL(U || p_t) = mean_t [ -log V - (1/V) sum_j log p_t(j) ]

over the response tokens t of rollout o, with p_t = softmax(logits_t / T) under the policy
that generated it. Computed by teacher forcing in row chunks with lm_head applied in token
chunks, so the full (R, T, V) logits never exist at once. No gradient flows through a reward.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import torch

from mgrpo.answers.equivalence import Equivalence
from mgrpo.core.voting import Vote
from mgrpo.rollout import RolloutBatch
from mgrpo.rollout.scoring import build_scoring_inputs, lm_head_of
from mgrpo.train.types import StepBatch, StepModels

__all__ = ["REWARDS", "RewardInputs", "self_certainty"]

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


@dataclass
class RewardInputs:
    """What a reward function may read. Tensors on D."""

    models: StepModels  # the step's models (self-certainty scores under the policy)
    batch: StepBatch  # the B prompts and their ground-truth answers
    policy_answers: list[list[str | None]]  # (B, M) parsed answers of the train rollouts
    votes: list[Vote]  # (B,) majority votes; empty unless the reward is "vote"
    train: RolloutBatch  # (B*M, T) the policy train rollouts, prompt-major
    equivalent: Equivalence  # memoised answer equivalence
    temperature: float  # the sampling temperature T
    device: torch.device  # D


def agreement(
    answers: list[list[str | None]],  # (B, M) policy train rollouts
    targets: list[str | None],  # (B,) pseudo-label or ground truth
    equivalent: Callable[[str, str], bool],
    device: torch.device | None = None,
) -> torch.Tensor:
    """1.0 where a rollout's answer is equivalent to its prompt's target, else 0.0 (no target
    or no parsed answer -> 0); (B, M) fp32 on `device` (the rollouts' device D)."""
    rows = [
        [float(t is not None and a is not None and equivalent(a, t)) for a in row]
        for row, t in zip(answers, targets)
    ]
    return torch.tensor(rows, dtype=torch.float32, device=device)  # (B, M)


def vote_reward(x: RewardInputs) -> torch.Tensor:
    """Agreement with the prompt's majority-vote pseudo-label (m-grpo, srt, ttrl)."""
    return agreement(x.policy_answers, [v.label for v in x.votes], x.equivalent, x.device)


def truth_reward(x: RewardInputs) -> torch.Tensor:
    """Agreement with the ground-truth answer (grpo)."""
    if any(a is None for a in x.batch.answers):
        raise ValueError("preset grpo needs a ground-truth answer for every prompt")
    return agreement(x.policy_answers, x.batch.answers, x.equivalent, x.device)


def self_certainty_reward(x: RewardInputs) -> torch.Tensor:
    """Self-certainty of each rollout under the policy that sampled it (intuitor)."""
    B, M = len(x.policy_answers), len(x.policy_answers[0])
    return self_certainty(
        x.models.policy_full or x.models.policy,
        [x.batch.prompt_ids[i] for i in x.train.prompt_index.tolist()],
        x.train.response_ids, x.train.response_mask, x.temperature,
    ).to(x.device).view(B, M)


#: AlgorithmSpec.reward -> (B, M) fp32 rewards on D.
REWARDS: dict[str, Callable[[RewardInputs], torch.Tensor]] = {
    "vote": vote_reward,
    "truth": truth_reward,
    "self_certainty": self_certainty_reward,
}
