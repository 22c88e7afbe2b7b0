"""The reward registry and every built-in reward: (B, M) rewards of the policy train rollouts.

A preset names its reward (`AlgorithmSpec.reward`); `REWARDS[name](RewardInputs)` returns a
(B, M) fp32 tensor on the rollouts' device D. A new reward is one function of
`RewardInputs` and one entry in `REWARDS`; nothing else in the step changes.

| name               | presets          | reward of rollout j of prompt b                   |
|--------------------|------------------|---------------------------------------------------|
| `vote`             | m-grpo, srt, ttrl, co-rewarding-ii | 1 if its answer is equivalent to the majority vote |
| `truth`            | grpo             | 1 if its answer is equivalent to the ground truth |
| `self_certainty`   | intuitor         | mean_t KL(U || p_t) under the policy that sampled it |
| `cluster_share`    | empo             | share of its answer cluster (`core.intrinsic.cluster_share`) |
| `negative_entropy` | em-rl            | -sum_t H_t over its response tokens               |
| `answer_entropy`   | rent             | -mean H_t over its last `rent_tokens` tokens      |
| `random`           | random           | Bernoulli(`random_p`), seeded by (seed, step, prompt) |

User rewards are entries of the same registry: `register_reward(name, fn)` (Python API), or
a spec 'path/to/file.py:function' / 'package.module:function' in `algorithm.reward(s)`, loaded
once (`get_reward`). A user function takes the public `user_rewards.RewardRecord` (built from
`RewardInputs` by `reward_record`) and returns (B, M) numbers; its errors name it and the step.

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
from mgrpo.core.intrinsic import (
    bernoulli_rewards,
    cluster_share,
    last_tokens_negative_entropy,
    negative_entropy,
)
from mgrpo.core.voting import Vote
from mgrpo.rollout import RolloutBatch
from mgrpo.rollout.scoring import build_scoring_inputs, lm_head_of
from mgrpo.seeds import RANDOM_REWARD_STREAM, step_seed
from mgrpo.train.presets import AlgorithmSpec
from mgrpo.train.types import Rollouts, StepBatch, StepModels
from mgrpo.train.user_rewards import RewardRecord, call_reward, load_reward_function

__all__ = ["REWARDS", "RewardInputs", "check_reward_name", "get_reward", "register_reward",
           "reward_record", "reward_votes", "self_certainty"]


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
    rollouts: Rollouts | None = None  # the whole scored pool (texts, entropies, keep, votes)
    spec: AlgorithmSpec | None = None  # the resolved algorithm (reward knobs)
    step: int = 0  # the training step
    seed: int = 0  # the run's seed


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


def _train_token_entropies(x: RewardInputs) -> tuple[torch.Tensor, torch.Tensor]:
    """(B*M, T) token entropies and masks of the train rollouts."""
    return x.train.entropies, x.train.response_mask


def cluster_share_reward(x: RewardInputs) -> torch.Tensor:
    """EMPO: share of the rollout's answer cluster among the prompt's M train rollouts."""
    B, M = len(x.policy_answers), len(x.policy_answers[0])
    return torch.tensor(cluster_share(x.policy_answers, x.equivalent), dtype=torch.float32,
                        device=x.device).view(B, M)


def negative_entropy_reward(x: RewardInputs) -> torch.Tensor:
    """EM-RL (token level): -sum_t H_t over the response tokens."""
    B, M = len(x.policy_answers), len(x.policy_answers[0])
    return negative_entropy(*_train_token_entropies(x)).float().to(x.device).view(B, M)


def answer_entropy_reward(x: RewardInputs) -> torch.Tensor:
    """RENT: -mean H_t over the last `spec.rent_tokens` response tokens (EOS included)."""
    B, M = len(x.policy_answers), len(x.policy_answers[0])
    k = x.spec.rent_tokens if x.spec is not None else 16
    return last_tokens_negative_entropy(*_train_token_entropies(x), k).float().to(x.device).view(B, M)


def random_reward(x: RewardInputs) -> torch.Tensor:
    """Bernoulli(`spec.random_p`) per rollout; prompt b's draws are seeded by (seed, step,
    global prompt index), so they do not depend on the number of ranks."""
    B, M = len(x.policy_answers), len(x.policy_answers[0])
    p = x.spec.random_p if x.spec is not None else 0.5
    rows = [bernoulli_rewards((M,), p, step_seed(x.seed, x.step, RANDOM_REWARD_STREAM,
                                                 x.batch.prompt_offset + b))
            for b in range(B)]
    return torch.stack(rows).to(x.device)


#: reward name -> (B, M) fp32 rewards on D. User functions join it by `register_reward` or
#: by a spec in the config (`get_reward`).
REWARDS: dict[str, Callable[[RewardInputs], torch.Tensor]] = {
    "vote": vote_reward,
    "truth": truth_reward,
    "self_certainty": self_certainty_reward,
    "cluster_share": cluster_share_reward,
    "negative_entropy": negative_entropy_reward,
    "answer_entropy": answer_entropy_reward,
    "random": random_reward,
}
#: rewards whose step runs the vote (every user reward also does: its record has the label)
_VOTING: set[str] = {"vote"}


def _padded(parts: list[torch.Tensor], B: int, pad: float | int) -> torch.Tensor:
    """(B, G, T): prompt-major (B*k, T_k) parts, padded to one width, side by side per prompt."""
    width = max(p.shape[1] for p in parts)
    rows = [torch.nn.functional.pad(p, (0, width - p.shape[1]), value=pad).view(B, -1, width)
            for p in parts]
    return torch.cat(rows, dim=1)


def reward_record(x: RewardInputs) -> RewardRecord:
    """The public record of a user reward, from the step's inputs (`user_rewards.RewardRecord`)."""
    r = x.rollouts
    if r is None:
        raise ValueError("a user reward needs the scored rollouts (RewardInputs.rollouts)")
    B = len(x.batch.prompt_ids)
    parts = [r.policy] + ([r.momentum] if r.momentum is not None else [])
    n_policy = r.policy_entropy.shape[1]
    G = len(r.answers[0]) if r.answers else n_policy
    entropies = (r.policy_entropy if r.momentum_entropy is None
                 else torch.cat([r.policy_entropy, r.momentum_entropy], dim=1))
    per_part = [[part.finish_reasons[b * (len(part.finish_reasons) // B):
                                     (b + 1) * (len(part.finish_reasons) // B)] for b in range(B)]
                for part in parts]  # part -> prompt -> finish reasons
    truncated_rows = [[fr == "length" for part in per_part for fr in part[b]] for b in range(B)]
    tokenizer = x.models.tokenizer
    return RewardRecord(
        step=x.step, num_train=r.train_rollouts,
        prompts=tokenizer.batch_decode(x.batch.prompt_ids, skip_special_tokens=False),
        prompt_ids=[list(p) for p in x.batch.prompt_ids],
        texts=r.texts, answers=r.answers,
        sources=["policy"] * n_policy + ["momentum"] * (G - n_policy),
        labels=[v.label for v in r.votes] if r.votes else [None] * B,
        truths=list(x.batch.answers),
        response_ids=_padded([p.response_ids for p in parts], B, 0),
        response_mask=_padded([p.response_mask for p in parts], B, False),
        token_entropies=_padded([p.entropies for p in parts], B, 0.0),
        entropies=entropies, kept=r.keep,
        lengths=torch.cat([p.lengths.view(B, -1) for p in parts], dim=1),
        truncated=torch.tensor(truncated_rows, dtype=torch.bool, device=r.keep.device),
    )


def _user_reward(name: str, fn: Callable[[RewardRecord], object]) -> Callable[[RewardInputs], torch.Tensor]:
    def reward(x: RewardInputs) -> torch.Tensor:
        return call_reward(fn, name, reward_record(x), x.device)

    reward.__doc__ = f"user reward {name}"
    return reward


def register_reward(name: str, fn: Callable[[RewardRecord], object]) -> None:
    """Add a user reward ``fn(RewardRecord) -> (B, M)`` to the registry under ``name`` (then
    usable as ``algorithm.reward: name``). Built-in names cannot be replaced."""
    if not isinstance(name, str) or not name or ":" in name:
        raise ValueError(f"reward name must be a non-empty string without ':', got {name!r}")
    if name in REWARDS and name not in _REGISTERED:
        raise ValueError(f"reward {name!r} is built in; choose another name")
    if not callable(fn):
        raise ValueError(f"register_reward({name!r}): {fn!r} is not callable")
    REWARDS[name] = _user_reward(name, fn)
    _REGISTERED.add(name)


_REGISTERED: set[str] = set()  # names added by register_reward
_LOADED: dict[str, Callable[[RewardInputs], torch.Tensor]] = {}  # spec -> wrapped user function


def is_user_spec(name: str) -> bool:
    """'file.py:function' or 'module:function' (not a registry name)."""
    return ":" in name


def check_reward_name(name: str, key: str, error: type[Exception] = ValueError) -> None:
    """A registry name, or a user spec (loaded when the algorithm is resolved)."""
    if not isinstance(name, str) or not name:
        raise error(f"{key}: expected a reward name or 'file.py:function', got {name!r}")
    if not is_user_spec(name) and name not in REWARDS:
        raise error(f"{key}: unknown reward {name!r}; valid: {', '.join(REWARDS)}, or a user "
                    "function 'path/to/file.py:function' / 'package.module:function'")


def get_reward(name: str) -> Callable[[RewardInputs], torch.Tensor]:
    """The registry entry of ``name``; a user spec is loaded (once) and wrapped."""
    if not is_user_spec(name):
        check_reward_name(name, "reward")
        return REWARDS[name]
    if name not in _LOADED:
        _LOADED[name] = _user_reward(name, load_reward_function(name))
    return _LOADED[name]


def reward_votes(name: str) -> bool:
    """Whether the step must vote for this reward (vote rewards and every user reward)."""
    return name in _VOTING or name in _REGISTERED or is_user_spec(name)
