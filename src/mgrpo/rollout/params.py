"""Sampling parameters shared by every rollout engine, validated once at construction."""

from __future__ import annotations

from dataclasses import dataclass

from mgrpo.checks import check_int


@dataclass(frozen=True, kw_only=True)
class SamplingParams:
    """How to sample responses.

    - `max_new_tokens` >= 1: response budget; a rollout that reaches it finishes with "length".
    - `temperature` >= 0: logits are divided by it; 0 means greedy (argmax). Log-probs and
      entropies reported by engines are those of softmax(logits / T) (T = 1 for greedy).
    - `top_p` in (0, 1] and `top_k` >= 0 (0 = off) restrict the set sampled from; the reported
      log-probs/entropies are still those of the FULL tempered softmax (what `score` and the
      training loss see), not of the truncated distribution.
    - `stop_token_ids`: a rollout finishes with "stop" right after emitting one of these
      (the stop token is part of the response). Empty = the model's EOS id(s).
    - `seed`: sampling is a deterministic function of (weights, prompts, n, params).
    """

    max_new_tokens: int
    temperature: float = 1.0
    top_p: float = 1.0
    top_k: int = 0
    stop_token_ids: tuple[int, ...] = ()
    seed: int = 0

    def __post_init__(self) -> None:
        check_int(self.max_new_tokens, "max_new_tokens", low=1)
        if not isinstance(self.temperature, (int, float)) or not self.temperature >= 0:
            raise ValueError(f"temperature must be >= 0 (0 = greedy), got {self.temperature!r}")
        if not isinstance(self.top_p, (int, float)) or not 0 < self.top_p <= 1:
            raise ValueError(f"top_p must be in (0, 1], got {self.top_p!r}")
        check_int(self.top_k, "top_k", low=0, rule="an int >= 0 (0 = off)")
        check_int(self.seed, "seed")
        stop = tuple(self.stop_token_ids)
        if any(not isinstance(t, int) or t < 0 for t in stop):
            raise ValueError(
                f"stop_token_ids must be non-negative ints, got {self.stop_token_ids!r}"
            )
        object.__setattr__(self, "stop_token_ids", stop)

    @property
    def greedy(self) -> bool:
        return self.temperature == 0

    @property
    def scoring_temperature(self) -> float:
        """Temperature of the distribution whose log-probs/entropies are reported (1 if greedy)."""
        return 1.0 if self.greedy else float(self.temperature)
