"""Vote options: momentum_weight (a momentum answer counts w times) and the tie rules, against a
loop-based reference; the defaults are the plain vote bit for bit."""

from __future__ import annotations

import random

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mgrpo.core.voting import VOTE_TIES, majority_vote, vote_groups

FAST = settings(deadline=None, max_examples=60, derandomize=True)

pools = st.lists(st.one_of(st.none(), st.sampled_from("01234")), max_size=12)


def _exact(a: str, b: str) -> bool:
    return a == b


def _reference(answers, start, w, ties, seed):
    """Literal rule: clusters in pool order; weighted sizes; tie rule over the maximal clusters."""
    reps, sizes, members = [], [], []
    for i, a in enumerate(answers):
        if a is None:
            continue
        if a in reps:
            j = reps.index(a)
        else:
            j = len(reps)
            reps.append(a)
            sizes.append(0)
            members.append([])
        sizes[j] += w if i >= start else 1
        members[j].append(i)
    if not reps:
        return None, 0, 0, False
    top = max(sizes)
    tied = [j for j in range(len(reps)) if sizes[j] == top]
    if ties == "policy-first":
        win = tied[0]
    elif ties == "momentum-first":
        order = [i for i in range(start, len(answers))] + list(range(start))
        win = min(tied, key=lambda j: min(order.index(i) for i in members[j]))
    else:
        win = random.Random(seed).choice(tied)
    return reps[win], sizes[win], sum(sizes), len(tied) > 1


@FAST
@given(answers=pools, data=st.data(), w=st.sampled_from([1.0, 2.0, 3.0, 0.5]),
       ties=st.sampled_from(VOTE_TIES.names()), seed=st.integers(0, 1000))
def test_matches_reference(answers, data, w, ties, seed) -> None:
    start = data.draw(st.integers(0, len(answers)))
    vote = majority_vote(answers, _exact, momentum_from=start, momentum_weight=w, ties=ties,
                         seed=seed)
    label, count, pool, tie = _reference(answers, start, w, ties, seed)
    assert (vote.label, vote.count, vote.pool_size, vote.tie) == (label, count, pool, tie)
    if pool:
        assert vote.share == count / pool


@FAST
@given(answers=pools, data=st.data())
def test_defaults_are_the_plain_vote_bit_for_bit(answers, data) -> None:
    start = data.draw(st.integers(0, len(answers)))
    plain = majority_vote(answers, _exact)
    explicit = majority_vote(answers, _exact, momentum_from=start, momentum_weight=1.0,
                             ties="policy-first")
    assert (plain.label, plain.count, plain.pool_size, plain.share) == (
        explicit.label, explicit.count, explicit.pool_size, explicit.share)
    assert type(plain.count) is int and type(explicit.count) is int


def test_weight_three_with_quarter_momentum_matches_half_share() -> None:
    # G = 8: M = 6 policy, N = 2 momentum at w = 3 -> momentum holds 6 of 12 votes, as N = G/2.
    pool = ["a"] * 3 + ["b"] * 3 + ["c", "c"]
    vote = majority_vote(pool, _exact, momentum_from=6, momentum_weight=3.0)
    assert (vote.label, vote.count, vote.pool_size) == ("c", 6.0, 12.0)
    assert vote.share == 0.5


def test_tie_rules() -> None:
    pool = ["a", "b", "b", "a"]  # policy a b, momentum b a: 2-2 tie
    assert majority_vote(pool, _exact, momentum_from=2).label == "a"
    assert majority_vote(pool, _exact, momentum_from=2).tie
    assert majority_vote(pool, _exact, momentum_from=2, ties="momentum-first").label == "b"
    # a tie between policy-only clusters under momentum-first falls back to opening order
    assert majority_vote(["x", "y", "z"], _exact, momentum_from=2, ties="momentum-first").label == "z"
    assert majority_vote(["x", "y"], _exact, momentum_from=2, ties="momentum-first").label == "x"
    labels = {majority_vote(pool, _exact, ties="random", seed=s).label for s in range(40)}
    assert labels == {"a", "b"}
    assert all(majority_vote(pool, _exact, ties="random", seed=s).label
               == majority_vote(pool, _exact, ties="random", seed=s).label for s in range(10))
    assert not majority_vote(["a", "a", "b"], _exact).tie


def test_vote_groups_passes_options_and_seeds() -> None:
    groups = [["a", "b", "b", "a"], ["c", "c", "d", "d"]]
    votes = vote_groups(groups, _exact, momentum_from=2, ties="momentum-first")
    assert [v.label for v in votes] == ["b", "d"]
    seeded = vote_groups(groups, _exact, ties="random", seeds=[1, 2])
    assert [v.label for v in seeded] == [
        majority_vote(g, _exact, ties="random", seed=s).label for g, s in zip(groups, [1, 2])]


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [({"ties": "coin"}, "tie rule"), ({"ties": "random"}, "seed"),
     ({"momentum_weight": 0.0}, "momentum_weight"), ({"momentum_weight": float("nan")}, "momentum_weight")],
)
def test_bad_options_raise(kwargs, match) -> None:
    with pytest.raises(ValueError, match=match):
        majority_vote(["a"], _exact, **kwargs)
    with pytest.raises(ValueError, match=match):
        vote_groups([["a"]], _exact, **kwargs)
