"""Reward functions users write: loading `path/to/file.py:function` or `package.module:function`,
the typed record they are called with, and checking what they return.

A user reward is ``fn(record: RewardRecord) -> (B, M)`` (a tensor or nested lists of numbers),
called once per step, where M is the number of policy TRAIN rollouts of each prompt (the first
M of its pool). The record shows the whole pool (policy, vote-only and momentum rollouts), so a
reward may read the momentum model's answers; only the first M columns are rewarded.

Several rewards (``algorithm.rewards: [{fn: ..., weight: ...}, ...]``) are mixed by
``mgrpo.train.rewards.mix_rewards`` with ``algorithm.reward_norm``.

Errors name the function and the step: a function that raises (``RewardFunctionError`` from
the original exception), returns the wrong shape, or returns NaN/inf.
"""

from __future__ import annotations

import hashlib
import importlib
import importlib.util
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType

import torch

__all__ = [
    "RewardFunctionError",
    "RewardRecord",
    "call_reward",
    "checked_rewards",
    "load_reward_function",
]


class RewardFunctionError(RuntimeError):
    """A reward function failed or returned something unusable (the message names it and the step)."""


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


def _file_module(path: Path, spec: str) -> ModuleType:
    resolved = path.resolve()
    name = "mgrpo_user_reward_" + hashlib.sha1(str(resolved).encode()).hexdigest()[:12]
    if name in sys.modules:
        return sys.modules[name]
    module_spec = importlib.util.spec_from_file_location(name, resolved)
    if module_spec is None or module_spec.loader is None:
        raise ValueError(f"reward {spec!r}: cannot load {resolved} as a Python file")
    module = importlib.util.module_from_spec(module_spec)
    sys.modules[name] = module
    try:
        module_spec.loader.exec_module(module)
    except Exception as exc:
        del sys.modules[name]
        raise ValueError(f"reward {spec!r}: importing {resolved} failed: "
                         f"{type(exc).__name__}: {exc}") from exc
    return module


def load_reward_function(spec: str) -> Callable[[RewardRecord], object]:
    """The callable named by ``spec``: ``path/to/file.py:function`` (a path relative to the
    working directory, or absolute) or ``package.module:function`` (importable).

    Raises:
        ValueError: a malformed spec, a missing file or module, an import error, a missing or
            non-callable attribute; the message names the spec.
    """
    if not isinstance(spec, str) or spec.count(":") < 1:
        raise ValueError(f"reward {spec!r} must be 'path/to/file.py:function' or "
                         "'package.module:function'")
    target, _, attr = spec.rpartition(":")
    if not target or not attr.isidentifier():
        raise ValueError(f"reward {spec!r}: expected '<file.py or module>:<function name>'")
    if target.endswith(".py") or "/" in target or "\\" in target:
        path = Path(target).expanduser()
        if not path.is_file():
            raise ValueError(f"reward {spec!r}: file {path} not found (relative paths are "
                             f"read from the working directory {Path.cwd()})")
        module = _file_module(path, spec)
    else:
        try:
            module = importlib.import_module(target)
        except ImportError as exc:
            raise ValueError(f"reward {spec!r}: cannot import module {target!r}: {exc}") from exc
    fn = getattr(module, attr, None)
    if fn is None:
        raise ValueError(f"reward {spec!r}: {target} has no attribute {attr!r}")
    if not callable(fn):
        raise ValueError(f"reward {spec!r}: {target}.{attr} is not callable")
    return fn


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
        raise RewardFunctionError(f"{where} returned NaN/inf (at [prompt, rollout] {bad})")
    return out if device is None else out.to(device)


def call_reward(fn: Callable[[RewardRecord], object], name: str, record: RewardRecord,
                device: torch.device | None = None) -> torch.Tensor:
    """``fn(record)`` checked by :func:`checked_rewards`; an exception inside ``fn`` becomes a
    RewardFunctionError naming ``name`` and the step (the original is chained)."""
    try:
        value = fn(record)
    except Exception as exc:
        raise RewardFunctionError(f"reward function {name} raised at step {record.step}: "
                                  f"{type(exc).__name__}: {exc}") from exc
    return checked_rewards(value, name, record.step, record.shape, device)
