"""Rewards at step time: a reward name to its function, user functions, and mixing rewards.

The built-in rewards live with their methods (`mgrpo.methods`, registry `REWARDS`); a reward
function takes `RewardInputs` and returns (B, M) fp32 rewards on the rollouts' device D.
Here:

- `resolve_reward(name, key)`: a `BoundReward` for a registry name (built in, or added with
  `register_reward`) or a user spec 'path/to/file.py:function' / 'package.module:function',
  loaded once; what cannot be resolved is a `ConfigError` naming `key`;
- `register_reward(name, fn)`: the Python API for a user function `fn(RewardRecord)`;
- `reward_record(x)`: the public `user_rewards.RewardRecord` a user function reads;
- `mix_rewards`: several (B, M) rewards by `algorithm.reward_norm` (`REWARD_NORMS`):

      sum        r = sum_k w_k r_k (one term of weight 1 is returned as it is, bit for bit)
      per-reward r = sum_k w_k (r_k - mean_g r_k) / (std_g r_k + eps), each reward first
                 normalised within its prompt's group over the loss set (GDPO-style,
                 `core.advantages.group_advantages`; a constant group gives 0)

A user reward always makes the step vote (its record carries the pseudo-label).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch

from mgrpo.core.advantages import group_advantages
from mgrpo.fields import ConfigError
from mgrpo.methods import REWARDS, BoundReward, Reward, RewardInputs
from mgrpo.registry import Registry, UnknownNameError
from mgrpo.train.user_rewards import RewardRecord, call_reward, load_reward_function
from mgrpo.user_functions import is_user_spec

__all__ = ["REWARD_NORMS", "mix_rewards", "register_reward", "resolve_reward", "reward_record"]


#: ``norm(parts, weights, in_loss) -> (B, M)``: how several rewards mix (module docstring).
RewardNorm = Callable[[Sequence[torch.Tensor], Sequence[float], torch.Tensor], torch.Tensor]
REWARD_NORMS: Registry[RewardNorm] = Registry("reward norm")


@REWARD_NORMS.register("sum")
def weighted_sum(parts: Sequence[torch.Tensor], weights: Sequence[float],
                 in_loss: torch.Tensor) -> torch.Tensor:
    """``sum_k w_k r_k``; one part of weight 1 is returned as it is."""
    if len(parts) == 1 and float(weights[0]) == 1.0:
        return parts[0]
    total = torch.zeros_like(parts[0], dtype=torch.float32)
    for part, w in zip(parts, weights):
        total = total + float(w) * part
    return total


@REWARD_NORMS.register("per-reward")
def per_reward(parts: Sequence[torch.Tensor], weights: Sequence[float],
               in_loss: torch.Tensor) -> torch.Tensor:
    """``sum_k w_k norm(r_k)``, each reward normalised within its group over the loss set."""
    total = torch.zeros_like(parts[0], dtype=torch.float32)
    for part, w in zip(parts, weights):
        total = total + float(w) * group_advantages(part, in_loss).to(torch.float32)
    return total


def mix_rewards(parts: Sequence[torch.Tensor], weights: Sequence[float], norm: str,
                in_loss: torch.Tensor) -> torch.Tensor:
    """Weighted mix of (B, M) rewards by `norm`, a name in `REWARD_NORMS`."""
    mix = REWARD_NORMS.get(norm)
    if not parts or len(parts) != len(weights):
        raise ValueError("mix_rewards needs one weight per reward (and at least one reward)")
    return mix(parts, weights, in_loss)


# ------------------------------------------------------------------------- user functions


def _padded(parts: list[torch.Tensor], B: int, pad: float | int) -> torch.Tensor:
    """(B, G, T): prompt-major (B*k, T_k) parts, padded to one width, side by side per prompt."""
    width = max(p.shape[1] for p in parts)
    rows = [torch.nn.functional.pad(p, (0, width - p.shape[1]), value=pad).view(B, -1, width)
            for p in parts]
    return torch.cat(rows, dim=1)


def reward_record(x: RewardInputs) -> RewardRecord:
    """The public record of a user reward, from the step's inputs (`user_rewards.RewardRecord`)."""
    r = x.pool
    B = len(x.prompt_ids)
    parts = [r.policy] + ([r.momentum] if r.momentum is not None else [])
    n_policy = r.policy_entropy.shape[1]
    G = len(r.answers[0]) if r.answers else n_policy
    per_part = [[part.finish_reasons[b * (len(part.finish_reasons) // B):
                                     (b + 1) * (len(part.finish_reasons) // B)] for b in range(B)]
                for part in parts]  # part -> prompt -> finish reasons
    truncated_rows = [[fr == "length" for part in per_part for fr in part[b]] for b in range(B)]
    return RewardRecord(
        step=x.step, num_train=r.train_rollouts,
        prompts=x.tokenizer.batch_decode(x.prompt_ids, skip_special_tokens=False),
        prompt_ids=[list(p) for p in x.prompt_ids],
        texts=r.texts, answers=r.answers,
        sources=["policy"] * n_policy + ["momentum"] * (G - n_policy),
        labels=x.labels,
        truths=list(x.truths),
        response_ids=_padded([p.response_ids for p in parts], B, 0),
        response_mask=_padded([p.response_mask for p in parts], B, False),
        token_entropies=_padded([p.entropies for p in parts], B, 0.0),
        entropies=r.entropy, kept=r.keep,
        lengths=torch.cat([p.lengths.view(B, -1) for p in parts], dim=1),
        truncated=torch.tensor(truncated_rows, dtype=torch.bool, device=r.keep.device),
    )


def _user_reward(name: str, fn: Callable[[RewardRecord], object]) -> Reward:
    """A registry entry around a user function: it reads the record, so the step votes."""
    def run(x: RewardInputs) -> torch.Tensor:
        return call_reward(fn, name, reward_record(x), x.device)

    run.__doc__ = f"user reward {name}"
    return Reward(name, run, votes=True, needs_truth=False)


_REGISTERED: set[str] = set()  # names added by register_reward
_LOADED: dict[str, Reward] = {}  # user spec -> its entry, loaded once per process


def register_reward(name: str, fn: Callable[[RewardRecord], object]) -> None:
    """Add a user reward ``fn(RewardRecord) -> (B, M)`` to the registry under ``name`` (then
    usable as ``algorithm.reward: name``). Built-in names cannot be replaced; a name this
    function registered before is replaced."""
    if not isinstance(name, str) or not name or ":" in name:
        raise ValueError(f"reward name must be a non-empty string without ':', got {name!r}")
    if name in REWARDS and name not in _REGISTERED:
        raise ValueError(f"reward {name!r} is built in; choose another name")
    if not callable(fn):
        raise ValueError(f"register_reward({name!r}): {fn!r} is not callable")
    if name in _REGISTERED:
        REWARDS.unregister(name)
    REWARDS.register(name, _user_reward(name, fn))
    _REGISTERED.add(name)


def resolve_reward(name: str, key: str, weight: float = 1.0) -> BoundReward:
    """The reward `name` with the registry's default parameters: a registry entry, or a user
    spec loaded (once). ConfigError naming `key` when it cannot be resolved."""
    if not is_user_spec(name):
        try:
            return REWARDS.get(name).bind(weight)
        except UnknownNameError as exc:
            raise ConfigError(f"{key}: {exc}") from None
    if name not in _LOADED:
        try:
            _LOADED[name] = _user_reward(name, load_reward_function(name))
        except ValueError as exc:
            raise ConfigError(f"{key}: {exc}") from None
    return _LOADED[name].bind(weight)
