"""Reward functions users write: loading `path/to/file.py:function` or `package.module:function`,
the typed record they are called with, and checking what they return.

A user reward is ``fn(record: RewardRecord) -> (B, M)`` (a tensor or nested lists of numbers),
called once per step, where M is the number of policy TRAIN rollouts of each prompt (the first
M of its pool). The record shows the whole pool (policy, vote-only and momentum rollouts), so a
reward may read the momentum model's answers; only the first M columns are rewarded.

Several rewards (``algorithm.rewards: [{fn: ..., weight: ...}, ...]``) are mixed by
``mgrpo.train.rewards.mix_rewards`` with ``algorithm.reward_norm``.

Errors name the function and the step: a function that raises (``RewardFunctionError`` from
the original exception, carrying the function's own frames), returns the wrong shape, or
returns NaN/inf (one line: the function, the step, the expected shape). `mgrpo train` prints
the user's frames (if any), then that line, and exits 2 (`mgrpo.user_functions`).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch

from mgrpo.user_functions import UserFunctionError, call_user_function, load_user_function

__all__ = [
    "RewardFunctionError",
    "RewardRecord",
    "call_reward",
    "checked_rewards",
    "load_reward_function",
]


class RewardFunctionError(UserFunctionError):
    """A reward function failed or returned something unusable (the message names it and the
    step; `user_traceback`: the function's own frames when it raised)."""


@dataclass(frozen=True)
class RewardRecord:
    """What a reward function reads, for one step's B prompts and their G-rollout pools.

    Pool order within each prompt: the M policy train rollouts, then the V vote-only policy
    rollouts, then the N momentum rollouts (G = M + V + N). Tensors are on the rollouts' device.
    """

    step: int  # the training step (1-based)
    num_train: int  # M: reward columns; the first M rollouts of each pool are trained on
    prompts: list[str]  # (B,) prompt texts as the model saw them (chat template applied)
    prompt_ids: list[list[int]]  # (B,) prompt token ids
    texts: list[list[str]]  # (B, G) decoded responses (special tokens skipped)
    answers: list[list[str | None]]  # (B, G) parsed final answers (None = none found)
    sources: list[str]  # (G,) "policy" or "momentum" for each pool position
    labels: list[str | None]  # (B,) majority-vote pseudo-label (None = no vote / no winner)
    truths: list[str | None]  # (B,) ground-truth answers (None = unlabelled)
    response_ids: torch.Tensor  # (B, G, T) response token ids, padded
    response_mask: torch.Tensor  # (B, G, T) bool, True on response tokens (EOS included)
    token_entropies: torch.Tensor  # (B, G, T) token entropies at the sampling temperature
    entropies: torch.Tensor  # (B, G) trajectory entropies (masked token means)
    kept: torch.Tensor  # (B, G) bool IQR keep mask (all True when the filter is off)
    lengths: torch.Tensor  # (B, G) response lengths in tokens
    truncated: torch.Tensor  # (B, G) bool: stopped by the length budget

    @property
    def shape(self) -> tuple[int, int]:
        """(B, M): the shape a reward function returns."""
        return len(self.prompts), self.num_train


def load_reward_function(spec: str) -> Callable[[RewardRecord], object]:
    """The callable named by ``spec``: ``path/to/file.py:function`` (a path relative to the
    working directory, or absolute) or ``package.module:function`` (importable).

    Raises:
        ValueError: a malformed spec, a missing file or module, an import error, a missing or
            non-callable attribute; the message names the spec.
    """
    return load_user_function(spec, "reward")


def checked_rewards(value: object, name: str, step: int, shape: tuple[int, int],
                    device: torch.device | None = None) -> torch.Tensor:
    """``value`` (tensor or nested lists) as a finite (B, M) fp32 tensor on ``device``.

    Raises:
        RewardFunctionError: not numbers, the wrong shape, or NaN/inf (naming ``name``, ``step``).
    """
    where = f"reward function {name} at step {step}"
    try:
        out = (value.detach() if isinstance(value, torch.Tensor)
               else torch.tensor(value, dtype=torch.float32))
    except (TypeError, ValueError, RuntimeError) as exc:
        raise RewardFunctionError(f"{where} returned {type(value).__name__}, not a (B, M) "
                                  f"tensor or nested list of numbers: {exc}") from None
    if out.dtype == torch.bool or out.is_complex():
        raise RewardFunctionError(f"{where} returned a {out.dtype} tensor; rewards are real numbers")
    if tuple(out.shape) != tuple(shape):
        raise RewardFunctionError(f"{where} returned shape {tuple(out.shape)}, expected "
                                  f"(B, M) = {tuple(shape)}")
    out = out.to(torch.float32)
    if not bool(torch.isfinite(out).all()):
        bad = (~torch.isfinite(out)).nonzero()[:5].tolist()
        raise RewardFunctionError(f"{where} returned NaN/inf (at [prompt, rollout] {bad}), "
                                  f"expected finite numbers, (B, M) = {tuple(shape)}")
    return out if device is None else out.to(device)


def call_reward(fn: Callable[[RewardRecord], object], name: str, record: RewardRecord,
                device: torch.device | None = None) -> torch.Tensor:
    """``fn(record)`` checked by :func:`checked_rewards`; an exception inside ``fn`` becomes a
    RewardFunctionError naming ``name`` and the step, carrying the function's own frames (the
    original is chained)."""
    value = call_user_function(fn, f"reward function {name} raised at step {record.step}",
                               record, error=RewardFunctionError)
    return checked_rewards(value, name, record.step, record.shape, device)
