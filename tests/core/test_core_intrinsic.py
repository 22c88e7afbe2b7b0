"""Label-free reward formulas (EMPO, EM-RL, RENT, random) and DAPO shaping against loops."""

from __future__ import annotations

import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from mgrpo.core.intrinsic import (
    bernoulli_rewards,
    cluster_share,
    last_tokens_negative_entropy,
    negative_entropy,
)
from mgrpo.core.shaping import informative_groups, overlong_keep, soft_overlong_penalty

FAST = settings(deadline=None, max_examples=50, derandomize=True)
pools = st.lists(st.one_of(st.none(), st.sampled_from("0123")), min_size=1, max_size=10)


def _near(a: str, b: str) -> bool:
    return abs(int(a) - int(b)) <= 1


def _ref_share(pool, equivalent):
    reps, members = [], []
    for i, a in enumerate(pool):
        if a is None:
            continue
        for j, rep in enumerate(reps):
            if equivalent(a, rep):
                members[j].append(i)
                break
        else:
            reps.append(a)
            members.append([i])
    out = [0.0] * len(pool)
    n = len(pool)
    sizes = [len(g) for g in members] + ([pool.count(None)] if None in pool else [])
    entropy = -sum(c / n * math.log(c / n) for c in sizes)
    if entropy >= math.log(n) - 1e-12:  # EMPO's threshold: no reward when all answers differ
        return out
    for group in members:
        for i in group:
            out[i] = len(group) / len(pool)
    return out


@FAST
@given(groups=st.lists(pools, min_size=1, max_size=4))
def test_cluster_share_matches_reference(groups) -> None:
    for equivalent in (str.__eq__, _near):
        assert cluster_share(groups, equivalent) == [_ref_share(g, equivalent) for g in groups]
    cut = min(len(g) for g in groups)
    assert cluster_share(groups, str.__eq__, rewarded=cut) == [
        _ref_share(g, str.__eq__)[:cut] for g in groups]


def test_cluster_share_example() -> None:
    assert cluster_share([["1", "1", None, "2"]], str.__eq__) == [[0.5, 0.5, 0.0, 0.25]]
    assert cluster_share([["1", "2", None]], str.__eq__) == [[0.0, 0.0, 0.0]]  # all distinct
    assert cluster_share([["1", "2", None, None]], str.__eq__) == [[0.25, 0.25, 0.0, 0.0]]


def _entropies(seed: int, rows: int, cols: int):
    g = torch.Generator().manual_seed(seed)
    h = torch.rand(rows, cols, generator=g, dtype=torch.float64) * 3
    mask = torch.rand(rows, cols, generator=g) < 0.7
    return h, mask


@FAST
@given(seed=st.integers(0, 10**6), rows=st.integers(1, 4), cols=st.integers(1, 8),
       k=st.one_of(st.none(), st.integers(1, 5)))
def test_entropy_rewards_match_loops(seed, rows, cols, k) -> None:
    h, mask = _entropies(seed, rows, cols)
    em_sum, em_mean = negative_entropy(h, mask), negative_entropy(h, mask, "mean")
    rent = last_tokens_negative_entropy(h, mask, k)
    for r in range(rows):
        valid = [float(h[r, t]) for t in range(cols) if mask[r, t]]
        assert float(em_sum[r]) == pytest.approx(-sum(valid), abs=1e-12)
        assert float(em_mean[r]) == pytest.approx(-sum(valid) / len(valid) if valid else 0.0)
        tail = valid if k is None else valid[-k:]
        assert float(rent[r]) == pytest.approx(-sum(tail) / len(tail) if tail else 0.0)


def test_rent_last_tokens_example() -> None:
    h = torch.tensor([[1.0, 2.0, 3.0, 9.0]])
    mask = torch.tensor([[True, True, True, False]])  # padding after the EOS
    assert float(last_tokens_negative_entropy(h, mask, 2)) == -2.5
    assert float(last_tokens_negative_entropy(h, mask, None)) == -2.0
    with pytest.raises(ValueError, match="k"):
        last_tokens_negative_entropy(h, mask, 0)
    with pytest.raises(ValueError, match="reduce"):
        negative_entropy(h, mask, "max")


def test_bernoulli_seeded_and_rate() -> None:
    a = bernoulli_rewards((64, 8), 0.3, seed=5)
    assert torch.equal(a, bernoulli_rewards((64, 8), 0.3, seed=5))
    assert not torch.equal(a, bernoulli_rewards((64, 8), 0.3, seed=6))
    assert set(a.unique().tolist()) <= {0.0, 1.0}
    assert abs(float(a.mean()) - 0.3) < 0.06
    assert float(bernoulli_rewards((3, 3), 0.0, 1).sum()) == 0.0
    assert float(bernoulli_rewards((3, 3), 1.0, 1).sum()) == 9.0
    with pytest.raises(ValueError, match="p"):
        bernoulli_rewards((1,), 1.5, 0)


def _ref_overlong(n: float, max_len: int, cache: int) -> float:
    if n <= max_len - cache:
        return 0.0
    if n <= max_len:
        return ((max_len - cache) - n) / cache
    return -1.0


@FAST
@given(lengths=st.lists(st.integers(0, 40), min_size=1, max_size=10),
       max_len=st.integers(1, 32), data=st.data())
def test_soft_overlong_penalty_matches_piecewise(lengths, max_len, data) -> None:
    cache = data.draw(st.integers(1, max_len))
    got = soft_overlong_penalty(torch.tensor(lengths), max_len, cache).tolist()
    assert got == pytest.approx([_ref_overlong(n, max_len, cache) for n in lengths])
    assert all(-1.0 <= v <= 0.0 for v in got)


def test_soft_overlong_penalty_bad_args() -> None:
    with pytest.raises(ValueError, match="cache"):
        soft_overlong_penalty(torch.tensor([1]), 4, 5)
    with pytest.raises(ValueError, match="max_len"):
        soft_overlong_penalty(torch.tensor([1]), 0, 1)


def test_overlong_keep() -> None:
    in_loss = torch.tensor([[True, True, False]])
    truncated = torch.tensor([[False, True, True]])
    assert overlong_keep(in_loss, truncated).tolist() == [[True, False, False]]


@FAST
@given(rows=st.lists(st.lists(st.sampled_from([0.0, 0.5, 1.0]), min_size=3, max_size=3),
                     min_size=1, max_size=5), data=st.data())
def test_informative_groups_matches_loop(rows, data) -> None:
    keep = [data.draw(st.lists(st.booleans(), min_size=3, max_size=3)) for _ in rows]
    got = informative_groups(torch.tensor(rows), torch.tensor(keep)).tolist()
    want = []
    for r, k in zip(rows, keep):
        values = [v for v, f in zip(r, k) if f]
        want.append(len(values) >= 2 and max(values) != min(values))
    assert got == want
    assert not math.isnan(sum(got))
