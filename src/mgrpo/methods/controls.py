"""Controls: rewards that carry no information about correctness (or the wrong one), to
calibrate the others. Any accuracy a method gains over a control comes from its reward, not
from the optimisation, the format or the prompt alone.

- `random` (reward `random`): r_bi ~ Bernoulli(p), p = `random_p`, i.i.d. per rollout; prompt
  b's draws are seeded by (seed, step, global prompt index), so they do not depend on the
  number of ranks (`core.intrinsic.bernoulli_rewards`, `seeds.RANDOM_REWARD_STREAM`).
- `format` (reward `format`): r_bi = 1 if the response holds a parsable `\\boxed{...}` (the
  content of its last box is non-empty after cleaning, `answers.extract.last_boxed` /
  `clean_answer`), else 0 -- whatever the answer kind of the run; no correctness check.
- `incorrect-label` (reward `incorrect_label`): r_bi = 1[a_bi ≡ wrong(truth_b)], agreement
  with a fixed wrong answer derived from the ground truth (every prompt needs one):

      wrong(t) = t + 1               t an integer or a decimal number ("41" -> "42",
                                     "2.5" -> "3.5", "-1" -> "0")
      wrong(t) = the next letter     t a single choice letter, cyclic within A-D for A-D
                                     ("D" -> "A") and within A-J for E-J
      wrong(t) = "(t)+1"             anything else (an expression: never equivalent to t)

Paper: Shao et al. 2025, arXiv 2506.10947 ("Spurious Rewards: Rethinking Training Signals in
RLVR"); the random control is also this project's sanity check. Public
code: ruixin31/Spurious_Rewards (`random<p>` in `code/ttrl/verifier/auto_verify.py`;
`box_only_format` in `code/ttrl/verifier/qwen/qwen_eval.py`; the incorrect labels from
`scripts/majority_voting_labeling.py` + `relabel_data_based_on_mv_labels.py`).

Departures: `random` is seeded per prompt (theirs: Python's global `random.random()`). The
incorrect label there is the base model's own majority answer, kept for the prompts where it
is wrong (one offline sampling pass over the data); here it is `wrong(truth)`, defined for
every prompt without an offline pass, so it is a fixed wrong answer but not a plausible one.
No vote in any control.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from decimal import Decimal
from typing import TYPE_CHECKING, Literal

from mgrpo.fields import check, doc
from mgrpo.methods.base import AlgorithmConfig, AlgorithmSpec, bind, preset, preset_field, reward
from mgrpo.seeds import RANDOM_REWARD_STREAM, step_seed

if TYPE_CHECKING:  # typing only: the reward's tensors
    from torch import Tensor

    from mgrpo.methods.inputs import RewardInputs

__all__ = ["FormatConfig", "IncorrectLabelConfig", "RandomConfig", "format_control",
           "format_reward", "incorrect_label_control", "incorrect_label_reward",
           "random_control", "random_reward", "wrong_answer"]

RANDOM_P = 0.5  # the Bernoulli probability unless the preset says otherwise


@reward("random")
def random_reward(x: RewardInputs, *, p: float = RANDOM_P) -> Tensor:
    """Bernoulli(p) per train rollout, seeded by (seed, step, global prompt index); (B, M)."""
    # lazy, start-up: method modules load without torch (a config error imports none)
    import torch

    from mgrpo.core.intrinsic import bernoulli_rewards

    B, M = x.shape
    rows = [bernoulli_rewards((M,), p, step_seed(x.seed, x.step, RANDOM_REWARD_STREAM,
                                                 x.prompt_offset + b))
            for b in range(B)]
    return torch.stack(rows).to(x.device)


@dataclass(frozen=True)
class RandomConfig(AlgorithmConfig):
    """`algorithm.*` of preset random."""

    preset: Literal["random"] = preset_field("random")
    random_p: float = doc(RANDOM_P, "the Bernoulli reward probability, in [0, 1]")

    def __post_init__(self) -> None:
        super().__post_init__()
        check(0.0 <= self.random_p <= 1.0, "algorithm.random_p", "must be in [0, 1]")


@preset("random", RandomConfig)
def random_control(cfg: RandomConfig) -> AlgorithmSpec:
    """G policy rollouts train on coin flips."""
    return cfg.spec(rewards=(bind("random", p=cfg.random_p),))


@reward("format")
def format_reward(x: RewardInputs) -> Tensor:
    """1 where a train rollout's text holds a parsable boxed answer, else 0; (B, M) on D."""
    # lazy, start-up: method modules load without torch (a config error imports none)
    import torch

    from mgrpo.answers.extract import clean_answer, last_boxed

    _, M = x.shape
    rows = [[float(clean_answer(last_boxed(text)) is not None) for text in texts[:M]]
            for texts in x.pool.texts]
    return torch.tensor(rows, dtype=torch.float32, device=x.device)


@dataclass(frozen=True)
class FormatConfig(AlgorithmConfig):
    """`algorithm.*` of preset format (the shared options only)."""

    preset: Literal["format"] = preset_field("format")


@preset("format", FormatConfig)
def format_control(cfg: FormatConfig) -> AlgorithmSpec:
    """G policy rollouts train on having a boxed answer at all."""
    return cfg.spec(rewards=(bind("format"),))


_CHOICE_LETTERS = "ABCDEFGHIJ"
_NUMBER = re.compile(r"[+-]?(\d+\.?\d*|\.\d+)")


def wrong_answer(truth: str) -> str:
    """The fixed wrong answer of `truth` (module docstring): t + 1 for a number, the next
    choice letter, else "(t)+1"."""
    t = truth.strip()
    if _NUMBER.fullmatch(t):
        return str(Decimal(t) + 1)
    if len(t) == 1 and t in _CHOICE_LETTERS:
        cycle = _CHOICE_LETTERS[:4] if t in _CHOICE_LETTERS[:4] else _CHOICE_LETTERS
        return cycle[(cycle.index(t) + 1) % len(cycle)]
    return f"({t})+1"


@reward("incorrect_label", needs_truth=True)
def incorrect_label_reward(x: RewardInputs) -> Tensor:
    """1 where a train rollout's answer is equivalent to `wrong_answer(truth)`; (B, M) on D."""
    # lazy, start-up: method modules load without torch (a config error imports none)
    from mgrpo.core.voting import agreement

    if any(t is None for t in x.truths):
        raise ValueError("the incorrect_label reward needs a ground-truth answer for every prompt")
    wrong = [wrong_answer(t) for t in x.truths if t is not None]
    return agreement(x.policy_answers, wrong, x.equivalent, x.device)


@dataclass(frozen=True)
class IncorrectLabelConfig(AlgorithmConfig):
    """`algorithm.*` of preset incorrect-label (the shared options only)."""

    preset: Literal["incorrect-label"] = preset_field("incorrect-label")


@preset("incorrect-label", IncorrectLabelConfig)
def incorrect_label_control(cfg: IncorrectLabelConfig) -> AlgorithmSpec:
    """G policy rollouts train on agreeing with a fixed wrong answer (needs labels)."""
    return cfg.spec(rewards=(bind("incorrect_label"),))
