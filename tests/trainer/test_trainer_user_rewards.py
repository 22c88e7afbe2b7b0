"""User reward functions: loading by spec, errors naming function and step, mixing."""

from __future__ import annotations

import math

import pytest
import torch

from mgrpo.core.advantages import group_advantages
from mgrpo.train.rewards import mix_rewards
from mgrpo.train.user_rewards import (
    RewardFunctionError,
    RewardRecord,
    call_reward,
    checked_rewards,
    load_reward_function,
)


def _record(step=3, B=2, M=2, G=3):
    T = 4
    return RewardRecord(
        step=step, num_train=M, prompts=["p"] * B, prompt_ids=[[1]] * B,
        texts=[["t"] * G] * B, answers=[["1"] * G] * B, sources=["policy"] * M + ["momentum"] * (G - M),
        labels=["1"] * B, truths=[None] * B,
        response_ids=torch.zeros(B, G, T, dtype=torch.long),
        response_mask=torch.ones(B, G, T, dtype=torch.bool),
        token_entropies=torch.zeros(B, G, T), entropies=torch.zeros(B, G),
        kept=torch.ones(B, G, dtype=torch.bool), lengths=torch.full((B, G), T),
        truncated=torch.zeros(B, G, dtype=torch.bool),
    )


def test_load_from_file_and_module(tmp_path, monkeypatch):
    f = tmp_path / "my_reward.py"
    f.write_text("def length(record):\n    return [[1.0] * record.num_train for _ in record.prompts]\n")
    fn = load_reward_function(f"{f}:length")
    assert fn(_record()) == [[1.0, 1.0], [1.0, 1.0]]
    monkeypatch.chdir(tmp_path)
    assert load_reward_function("my_reward.py:length") is fn  # same file, one module
    assert load_reward_function("math:sqrt") is math.sqrt


@pytest.mark.parametrize(("spec", "match"), [
    ("nope", "must be"),
    ("missing_file.py:f", "not found"),
    ("mgrpo_no_such_module_xyz:f", "cannot import"),
    ("math:no_such_fn", "no attribute 'no_such_fn'"),
    ("math:pi", "not callable"),
    ("math:1bad", "expected"),
])
def test_load_errors_name_the_spec(spec, match):
    with pytest.raises(ValueError, match=match) as info:
        load_reward_function(spec)
    assert repr(spec) in str(info.value)


def test_import_error_in_file(tmp_path):
    f = tmp_path / "broken.py"
    f.write_text("raise RuntimeError('boom')\n")
    with pytest.raises(ValueError, match="importing .*broken.py failed: RuntimeError: boom"):
        load_reward_function(f"{f}:fn")


def test_call_checks_shape_nan_and_exceptions():
    rec = _record(step=7)
    assert call_reward(lambda r: torch.ones(2, 2), "ones", rec).dtype == torch.float32
    with pytest.raises(RewardFunctionError, match=r"reward function bad at step 7 returned shape \(3,\)"):
        call_reward(lambda r: [1.0, 2.0, 3.0], "bad", rec)
    with pytest.raises(RewardFunctionError, match="nan_fn at step 7 returned NaN"):
        call_reward(lambda r: [[float("nan"), 0.0], [0.0, 0.0]], "nan_fn", rec)

    def boom(r):
        raise KeyError("x")

    with pytest.raises(RewardFunctionError, match="boom raised at step 7: KeyError") as info:
        call_reward(boom, "boom", rec)
    assert isinstance(info.value.__cause__, KeyError)
    with pytest.raises(RewardFunctionError, match="not a \\(B, M\\)"):
        checked_rewards("abc", "s", 1, (2, 2))
    with pytest.raises(RewardFunctionError, match="ragged"):
        checked_rewards([[1.0], [1.0, 2.0]], "ragged", 1, (2, 2))


def test_mix_sum_and_per_reward():
    a = torch.tensor([[1.0, 0.0, 1.0], [0.0, 0.0, 0.0]])
    b = torch.tensor([[10.0, 30.0, 20.0], [5.0, 6.0, 7.0]])
    mask = torch.ones(2, 3, dtype=torch.bool)
    assert mix_rewards([a], [1.0], "sum", mask) is a  # bit for bit
    torch.testing.assert_close(mix_rewards([a, b], [2.0, 0.5], "sum", mask), 2 * a + 0.5 * b)
    want = 2 * group_advantages(a, mask) + 0.5 * group_advantages(b, mask)
    torch.testing.assert_close(mix_rewards([a, b], [2.0, 0.5], "per-reward", mask), want)
    # per-reward: a reward's scale does not change its share
    torch.testing.assert_close(mix_rewards([a, 100 * b], [1.0, 1.0], "per-reward", mask),
                               mix_rewards([a, b], [1.0, 1.0], "per-reward", mask), atol=1e-4, rtol=0)
    with pytest.raises(ValueError, match="unknown reward norm 'max'; valid names: per-reward, sum"):
        mix_rewards([a], [1.0], "max", mask)
    with pytest.raises(ValueError, match="one weight"):
        mix_rewards([a, b], [1.0], "sum", mask)
