"""majority_vote: docs/design.md §3 clustering walk vs a slow reference, ties, memoisation, min_share."""

from __future__ import annotations

import dataclasses
from collections import Counter

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mgrpo.core.voting import Vote, majority_vote, vote_groups

FAST = settings(deadline=None, max_examples=50, derandomize=True)

pools = st.lists(st.one_of(st.none(), st.sampled_from("0123456789")), max_size=20)


def _exact(a: str, b: str) -> bool:
    return a == b


def _near(a: str, b: str) -> bool:
    """A reflexive, symmetric, NON-transitive equivalence: integers at most 1 apart."""
    return abs(int(a) - int(b)) <= 1


def _reference_vote(answers, equivalent, min_share=0.0) -> Vote:
    """Literal docs/design.md §3 walk: no memo, no fast path, equivalent called for every comparison."""
    reps: list[str] = []
    sizes: list[int] = []
    for a in answers:
        if a is None:
            continue
        for j, rep in enumerate(reps):
            if equivalent(a, rep):
                sizes[j] += 1
                break
        else:
            reps.append(a)
            sizes.append(1)
    if not reps:
        return Vote(None, 0, 0, 0.0)
    best = 0
    for j in range(1, len(reps)):
        if sizes[j] > sizes[best]:  # strict: ties stay with the cluster opened first
            best = j
    pool = sum(sizes)
    share = sizes[best] / pool
    return Vote(reps[best] if share >= min_share else None, sizes[best], pool, share)


class CountingEquivalence:
    def __init__(self, fn) -> None:
        self.fn = fn
        self.calls: Counter[tuple[str, str]] = Counter()

    def __call__(self, a: str, b: str) -> bool:
        self.calls[(a, b)] += 1
        return self.fn(a, b)


@FAST
@given(answers=pools, min_share=st.floats(0.0, 1.0))
def test_matches_reference_walk(answers: list[str | None], min_share: float) -> None:
    for equivalent in (_exact, _near):
        assert majority_vote(answers, equivalent, min_share) == _reference_vote(
            answers, equivalent, min_share
        )


@FAST
@given(answers=pools)
def test_exact_vote_is_plurality_with_first_appearance_tie_break(answers: list[str | None]) -> None:
    vote = majority_vote(answers, _exact)
    present = [a for a in answers if a is not None]
    assert vote.pool_size == len(present)
    if not present:
        assert vote == Vote(None, 0, 0, 0.0)
        return
    counts = Counter(present)
    top = max(counts.values())
    first_top = next(a for a in present if counts[a] == top)
    assert (vote.label, vote.count) == (first_top, top)
    assert vote.share == pytest.approx(top / len(present))
    assert majority_vote(list(answers), _exact) == vote  # deterministic


@FAST
@given(answers=pools)
def test_equivalent_called_at_most_once_per_pair_and_never_on_identical(
    answers: list[str | None],
) -> None:
    counting = CountingEquivalence(_near)
    majority_vote(answers, counting)
    assert all(n == 1 for n in counting.calls.values())
    assert all(a != b for a, b in counting.calls)


def test_tie_goes_to_cluster_opened_first_and_is_order_stable() -> None:
    assert majority_vote(["b", "a", "a", "b"], _exact).label == "b"
    assert majority_vote(["a", "b", "b", "a"], _exact).label == "a"
    assert majority_vote([None, "x", "y"], _exact) == Vote("x", 1, 2, 0.5)


def test_non_transitive_equivalence_follows_the_walk() -> None:
    # "1" opens C0; "2" joins C0 (|2-1| <= 1); "3" is not near "1" -> opens C1; "3" joins C1.
    vote = majority_vote(["1", "2", "3", "3"], _near)
    assert vote == Vote("1", 2, 4, 0.5)
    # "3" first: C0 = {3, 2}, "1" not near "3" -> C1 = {1}
    assert majority_vote(["3", "2", "1"], _near) == Vote("3", 2, 3, pytest.approx(2 / 3))


def test_memoisation_call_count() -> None:
    counting = CountingEquivalence(lambda a, b: a.lower() == b.lower())
    pool = ["A", "b", "a", "a", "B", "c", "a", "A", "b"]
    vote = majority_vote(pool, counting)
    assert vote == Vote("A", 5, 9, pytest.approx(5 / 9))
    # b-A, a-A, B-A, B-b, c-A, c-b: each distinct answer against each representative once
    assert counting.calls == Counter(
        {("b", "A"): 1, ("a", "A"): 1, ("B", "A"): 1, ("B", "b"): 1, ("c", "A"): 1, ("c", "b"): 1}
    )


def test_none_answers_are_skipped() -> None:
    assert majority_vote([None, None], _exact) == Vote(None, 0, 0, 0.0)
    assert majority_vote([], _exact) == Vote(None, 0, 0, 0.0)
    assert majority_vote([None, "7", None, "7", "8"], _exact) == Vote(
        "7", 2, 3, pytest.approx(2 / 3)
    )


def test_min_share() -> None:
    pool = ["1", "1", "2", "3"]
    assert majority_vote(pool, _exact, min_share=0.5).label == "1"  # share == threshold keeps
    rejected = majority_vote(pool, _exact, min_share=0.51)
    assert rejected == Vote(None, 2, 4, 0.5)  # count/share still reported
    assert majority_vote(["4", "4"], _exact, min_share=1.0).label == "4"
    assert majority_vote([None], _exact, min_share=0.0).label is None


@pytest.mark.parametrize("bad", [-0.1, 1.5, float("nan")])
def test_bad_min_share_raises(bad: float) -> None:
    with pytest.raises(ValueError, match="min_share"):
        majority_vote(["1"], _exact, bad)


def test_non_string_answer_raises_and_vote_is_frozen() -> None:
    with pytest.raises(ValueError, match=r"answers\[1\]"):
        majority_vote(["1", 2], _exact)  # type: ignore[list-item]
    vote = majority_vote(["1"], _exact)
    with pytest.raises(dataclasses.FrozenInstanceError):
        vote.label = "2"  # type: ignore[misc]


@FAST
@given(
    groups=st.lists(pools, max_size=5),
    data=st.data(),
    min_share=st.floats(0.0, 1.0),
)
def test_vote_groups_is_one_vote_per_group_with_dropped_answers_as_none(
    groups: list[list[str | None]], data: st.DataObject, min_share: float
) -> None:
    keep = [data.draw(st.lists(st.booleans(), min_size=len(g), max_size=len(g))) for g in groups]
    assert vote_groups(groups, _near, min_share) == [majority_vote(g, _near, min_share) for g in groups]
    masked = [[a if k else None for a, k in zip(g, f)] for g, f in zip(groups, keep)]
    assert vote_groups(groups, _near, min_share, keep=keep) == [
        majority_vote(g, _near, min_share) for g in masked
    ]


def test_vote_groups_rejects_a_keep_mask_of_another_shape() -> None:
    with pytest.raises(ValueError, match="keep must hold one flag per answer"):
        vote_groups([["1", "2"]], _exact, keep=[[True]])

