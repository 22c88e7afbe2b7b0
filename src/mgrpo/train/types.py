"""The records a training step passes between its stages, with the shape of every field.

    StepModels    the models, engines and optimizer a step touches (a layout's `Roles` plus
                  the trained policy, its engines, optimizer, checker and tokenizer)
    StepBatch     B prompts (this rank's slice of the step's prompts)
    UpdateSettings the numbers the frozen passes and the updates read (not the whole Config)
    LossSet       the L rollouts that enter the loss, with their advantages
    LossStats     what the updates report: loss sums and one gradient norm per update

The scored pool a method reads (`Rollouts`) and a reward's inputs are `mgrpo.methods.inputs`;
the shaped rewards `train/step_shaping.py`; the metric inputs `train/logs/step_metrics.py`.

Shapes: B prompts, M policy train rollouts, V vote-only policy rollouts, N momentum
rollouts per prompt, G = M + V + N; L rows in the loss set; T / T' response widths. Every
tensor indexed by rollout row lives on the rollouts' device D (`step.py`, device rule).
"""

from __future__ import annotations

from collections.abc import Callable
from contextlib import AbstractContextManager
from dataclasses import dataclass, field

import torch
from torch import nn

from mgrpo.answers import AnswerChecker
from mgrpo.config import Config
from mgrpo.methods import AlgorithmSpec
from mgrpo.methods.base import LossSpec
from mgrpo.models.protocol import Tokenizer
from mgrpo.parallel.distributed import SINGLE, DistContext
from mgrpo.rollout import RolloutBatch, RolloutEngine
from mgrpo.train.layout.lora import ScopedEngine
from mgrpo.train.layout.momentum import Momentum

__all__ = ["LossSet", "LossStats", "Roles", "StepBatch", "StepModels", "UpdateSettings"]


@dataclass(kw_only=True)
class Roles:
    """The models a layout (`train/layout/layouts.py`) builds around the policy."""

    # EMA model that samples the N momentum rollouts; None = no momentum rollouts
    momentum: Momentum | None = None
    # frozen model of the KL term; None when kl_coef == 0 (no third model)
    reference: nn.Module | None = None
    # context in which `reference` scores (LoRA: adapters disabled); None = nothing to enter
    reference_scope: Callable[[], AbstractContextManager] | None = None
    # full-weight policy copy that samples (mixed precision: bf16; FSDP: unsharded); None =
    # the policy itself
    policy_full: nn.Module | None = None
    # after each optimizer step: refresh `policy_full` from the trained weights; None = nothing
    after_update: Callable[[], None] | None = None
    # compute dtype of the training forward over an fp32 master (torch.autocast); None = the
    # parameters' own dtype (fp32 runs, pure-bf16 runs, LoRA, FSDP's MixedPrecisionPolicy)
    train_autocast: torch.dtype | None = None


@dataclass(kw_only=True)
class StepModels(Roles):
    """Everything a step touches: the layout's `Roles` and the trained policy around them."""

    policy: nn.Module  # the trained weights (fp32 master, LoRA adapters or FSDP shards)
    policy_engine: RolloutEngine  # samples the policy rollouts (from `policy_full or policy`)
    momentum_engine: RolloutEngine | ScopedEngine | None  # the momentum rollouts; None = no N
    optimizer: torch.optim.Optimizer
    scheduler: torch.optim.lr_scheduler.LRScheduler
    checker: AnswerChecker  # answer equivalence (votes, rewards, accuracy)
    tokenizer: Tokenizer  # a Hugging Face tokenizer (or the character tokenizer)
    stop_token_ids: tuple[int, ...]  # ids that end a rollout
    dist: DistContext = SINGLE  # the process group (single process: SINGLE)

    @classmethod
    def around(cls, roles: Roles, **fields: object) -> StepModels:
        """The layout's `roles` plus the remaining fields (keyword arguments)."""
        return cls(**vars(roles), **fields)


@dataclass
class StepBatch:
    """B prompts: their token ids and (diagnostic-only, unless reward == truth) answers.

    Under data parallelism it is this rank's slice: global prompt indices
    [prompt_offset, prompt_offset + B) out of `global_prompts` (None = B, one process).
    Co-rewarding-i: `twin_ids` holds each prompt's rephrased twin; `with_twins()` is the
    batch of 2B prompts the step runs on (the B prompts, then their twins, `twins` set)."""

    prompt_ids: list[list[int]]  # (B,) token ids of each prompt
    answers: list[str | None]  # (B,) ground-truth answers (None = unlabelled)
    prompt_offset: int = 0  # global index of prompt 0 of this slice
    global_prompts: int | None = None  # prompts of the step over all ranks (None = B)
    twin_ids: list[list[int]] | None = None  # (B,) token ids of each prompt's twin (None: none)
    twins: bool = False  # prompts B/2.. are the twins of prompts 0..B/2-1 (`with_twins`)

    def with_twins(self) -> StepBatch:
        """The 2B prompts: these B, then their twins (same answers). Globally the step then
        has twice the questions: Q questions at [0, Q), their twins at [Q, 2Q)."""
        if self.twin_ids is None or self.twins:
            raise ValueError("with_twins needs a batch with twin_ids that is not yet paired")
        questions = self.global_prompts or len(self.prompt_ids)
        return StepBatch(self.prompt_ids + self.twin_ids, self.answers + self.answers,
                         self.prompt_offset, 2 * questions, twins=True)

    def global_index(self, b: int) -> int:
        """The global index of prompt b (per-prompt seeds, the updates' split of the prompts):
        prompt_offset + b; with twins, a twin's is its question's plus the step's number of
        questions, so it is the same on any number of ranks."""
        half = len(self.prompt_ids) // 2 if self.twins else len(self.prompt_ids)
        if b < half:
            return self.prompt_offset + b
        return (self.global_prompts or 2 * half) // 2 + self.prompt_offset + (b - half)


@dataclass(frozen=True)
class UpdateSettings:
    """The settings `frozen_logprobs` and the updates read, resolved once per step."""

    updates_per_step: int  # U optimizer updates per pass, each over B / U prompts
    micro_batch_size: int  # loss rows per forward/backward (gradient accumulation)
    temperature: float  # the sampling temperature: log-probs are of softmax(logits / T)
    max_new_tokens: int  # the response budget (the length normaliser of some loss aggs)
    max_grad_norm: float  # gradient-norm clip
    loss: LossSpec  # the algorithm's loss settings (clip, KL, aggregation, entropy bonus)
    epochs: int = 1  # mu passes over the step's rollouts (algorithm.epochs)

    @property
    def optimizer_steps(self) -> int:
        """mu x U: the optimizer steps (and EMA updates) of one training step."""
        return self.epochs * self.updates_per_step

    @classmethod
    def of(cls, cfg: Config, spec: AlgorithmSpec) -> UpdateSettings:
        """From the trainer, generation and optim sections and the resolved algorithm."""
        return cls(
            updates_per_step=cfg.trainer.updates_per_step,
            micro_batch_size=cfg.trainer.micro_batch_size,
            temperature=cfg.generation.temperature,
            max_new_tokens=cfg.generation.max_new_tokens,
            max_grad_norm=cfg.optim.max_grad_norm,
            loss=spec.loss,
            epochs=spec.epochs,
        )


@dataclass
class LossSet:
    """The L rollouts that enter the loss, as rows of `train` (the B*M policy train rollouts)."""

    train: RolloutBatch  # (B*M, T) the policy's first M rollouts of each prompt
    rollouts: RolloutBatch  # (L, T') the loss rows of `train`
    advantages: torch.Tensor  # (L,) on D


@dataclass
class LossStats:
    """What the U updates report (this rank's sums; `step_metrics` sums them over ranks)."""

    # loss/pg, loss/kl, loss/clip_fraction: each the mean over the mu x U optimizer updates
    # of the update's value
    sums: dict[str, float] = field(
        default_factory=lambda: {"loss/pg": 0.0, "loss/kl": 0.0, "loss/clip_fraction": 0.0})
    grad_norms: list[float] = field(default_factory=list)  # (mu U,) one per optimizer update

    def add(self, sums: dict[str, float]) -> None:
        """Add one update's loss sums (already divided by mu x U)."""
        for key, value in sums.items():
            self.sums[key] = self.sums.get(key, 0.0) + value
