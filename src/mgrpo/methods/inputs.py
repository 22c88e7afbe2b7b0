"""What a method reads: the step's scored pool (`Rollouts`) and a reward's inputs (`RewardInputs`).

Shapes: B prompts, M policy train rollouts, V vote-only policy rollouts, N momentum rollouts
per prompt, G = M + V + N; T response width. Co-rewarding-i runs the step on 2B prompts (the
questions, then their rephrased twins: `RewardInputs.twins`), so B counts both copies. Pool order within each prompt: the M train
rollouts, the V vote-only ones, then the N momentum ones. Every tensor indexed by rollout row
lives on the rollouts' device D (`train/step.py`, device rule). Types only at import (the
records are built by `train/step.py`), so the method modules stay torch-free at import.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # typing only: the records' fields
    import torch
    from torch import nn

    from mgrpo.answers.equivalence import Equivalence
    from mgrpo.core.voting import Vote
    from mgrpo.models.protocol import Tokenizer
    from mgrpo.rollout.batch import RolloutBatch

__all__ = ["RewardInputs", "Rollouts"]


@dataclass
class Rollouts:
    """The step's rollouts, scored: entropies, IQR keep mask, parsed answers and the votes."""

    train_rollouts: int  # M: the policy rollouts of each prompt that enter the loss
    policy: RolloutBatch  # (B*(M+V), T) policy rollouts, prompt-major
    momentum: RolloutBatch | None  # (B*N, T) momentum rollouts; None when N == 0
    policy_entropy: torch.Tensor  # (B, M+V) trajectory entropies, on D
    momentum_entropy: torch.Tensor | None  # (B, N) on D; None when N == 0
    keep: torch.Tensor  # (B, G) bool IQR keep mask (all True when the filter is off), on D
    answers: list[list[str | None]]  # (B, G) parsed answers: policy rollouts, then momentum
    votes: list[Vote]  # (B,) majority votes over the kept answers; [] unless the step votes
    texts: list[list[str]] = field(default_factory=list)  # (B, G) decoded responses

    @property
    def policy_answers(self) -> list[list[str | None]]:
        """(B, M) answers of the policy train rollouts (the first M of each prompt)."""
        return [row[: self.train_rollouts] for row in self.answers]

    @property
    def entropy(self) -> torch.Tensor:
        """(B, G) trajectory entropies of the whole pool, policy then momentum, on D."""
        if self.momentum_entropy is None:
            return self.policy_entropy
        # lazy, start-up: this module is read without torch (types only)
        import torch

        return torch.cat([self.policy_entropy, self.momentum_entropy], dim=1)


@dataclass(frozen=True)
class RewardInputs:
    """What a reward function reads for the B prompts of a step (tensors on D). A method's
    own parameters are bound into its reward when the algorithm is resolved, never read here."""

    pool: Rollouts  # the whole scored pool (texts, answers, entropies, keep mask, votes)
    train: RolloutBatch  # (B*M, T) the policy train rollouts, prompt-major
    prompt_ids: list[list[int]]  # (B,) prompt token ids
    truths: list[str | None]  # (B,) ground-truth answers (None = unlabelled)
    equivalent: Equivalence  # memoised answer equivalence of the run's answer kind
    sampler: nn.Module  # the module that sampled the policy rollouts (self-certainty)
    tokenizer: Tokenizer  # decodes the prompts (user reward records)
    temperature: float  # the sampling temperature T
    step: int  # the training step (1-based)
    seed: int  # the run's seed
    prompt_offset: int  # global index of prompt 0 (a seeded reward is the same on any W)
    # co-rewarding-i: prompts B/2.. are the rephrased twins of prompts 0..B/2-1 (in order)
    twins: bool = False

    @property
    def shape(self) -> tuple[int, int]:
        """(B, M): the shape of the rewards."""
        return len(self.prompt_ids), self.pool.train_rollouts

    @property
    def device(self) -> torch.device:
        """D, the rollouts' device."""
        return self.pool.keep.device

    @property
    def policy_answers(self) -> list[list[str | None]]:
        """(B, M) parsed answers of the train rollouts."""
        return self.pool.policy_answers

    @property
    def labels(self) -> list[str | None]:
        """(B,) the vote's pseudo-labels (None: no vote, or no winner)."""
        return [v.label for v in self.pool.votes] if self.pool.votes else [None] * self.shape[0]

    def twin_of(self, b: int) -> int:
        """The index of prompt b's rephrased twin (`twins`: the second half pairs the first)."""
        if not self.twins:
            raise ValueError("these prompts have no rephrased twins (preset co-rewarding-i)")
        half = self.shape[0] // 2
        return b + half if b < half else b - half
