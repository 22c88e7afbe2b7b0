"""Entropy minimisation: the policy's own token entropy, negated, is the reward (EM-RL, RENT).

- `em-rl` (reward `negative_entropy`): r_i = -sum_t H_t over rollout i's response tokens
  (the paper's token-level trajectory estimate). Agarwal et al. 2025, arXiv 2505.15134.
- `rent` (reward `answer_entropy`): r_i = -mean H_t over the LAST `rent_tokens` response
  tokens, EOS included (fewer when the response is shorter). Prabhudesai et al. 2025,
  arXiv 2505.22660. The paper scores the answer tokens; the last k tokens are where a boxed
  final answer sits, and which tokens count is exactly this rule.

H_t is the full-distribution entropy of the sampling distribution at temperature T, as the
engine returned it for the rollout (`core.intrinsic`). Public code: not checked for this
page. No vote.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal

from mgrpo.fields import check, doc
from mgrpo.methods.base import AlgorithmConfig, AlgorithmSpec, bind, preset, preset_field, reward

if TYPE_CHECKING:  # typing only: the reward's tensors
    from torch import Tensor

    from mgrpo.methods.inputs import RewardInputs

__all__ = ["EmRlConfig", "RentConfig", "answer_entropy_reward", "em_rl",
           "negative_entropy_reward", "rent"]

RENT_TOKENS = 16  # the last response tokens RENT scores unless the preset says otherwise


@reward("negative_entropy")
def negative_entropy_reward(x: RewardInputs) -> Tensor:
    """EM-RL (token level): -sum_t H_t over each train rollout's response tokens; (B, M)."""
    # lazy, start-up: method modules load without torch (a config error imports none)
    from mgrpo.core.intrinsic import negative_entropy

    B, M = x.shape
    return negative_entropy(x.train.entropies, x.train.response_mask).float().to(x.device).view(B, M)


@reward("answer_entropy")
def answer_entropy_reward(x: RewardInputs, *, tokens: int = RENT_TOKENS) -> Tensor:
    """RENT: -mean H_t over the last `tokens` response tokens (EOS included); (B, M)."""
    # lazy, start-up: method modules load without torch (a config error imports none)
    from mgrpo.core.intrinsic import last_tokens_negative_entropy

    B, M = x.shape
    h = last_tokens_negative_entropy(x.train.entropies, x.train.response_mask, tokens)
    return h.float().to(x.device).view(B, M)


@dataclass(frozen=True)
class EmRlConfig(AlgorithmConfig):
    """`algorithm.*` of preset em-rl (the shared options only)."""

    preset: Literal["em-rl"] = preset_field("em-rl")


@preset("em-rl", EmRlConfig)
def em_rl(cfg: EmRlConfig) -> AlgorithmSpec:
    """G policy rollouts train on their negative summed token entropy."""
    return cfg.spec(rewards=(bind("negative_entropy"),))


@dataclass(frozen=True)
class RentConfig(AlgorithmConfig):
    """`algorithm.*` of preset rent."""

    preset: Literal["rent"] = preset_field("rent")
    rent_tokens: int = doc(RENT_TOKENS, "the last response tokens whose entropy is the reward, "
                           ">= 1")

    def __post_init__(self) -> None:
        super().__post_init__()
        check(self.rent_tokens >= 1, "algorithm.rent_tokens", "must be >= 1")


@preset("rent", RentConfig)
def rent(cfg: RentConfig) -> AlgorithmSpec:
    """G policy rollouts train on the negative mean entropy of their last tokens."""
    return cfg.spec(rewards=(bind("answer_entropy", tokens=cfg.rent_tokens),))
