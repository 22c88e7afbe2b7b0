"""Majority vote over final answers with an equivalence function (docs/design.md §3).

The pool is the sequence of kept rollouts' answers in order (policy 0..M-1, then momentum
0..N-1); ``None`` (no parsable answer) is skipped. Walking the pool, each answer joins the FIRST
cluster whose representative it is equivalent to, else opens a new cluster with itself as
representative. The winner is the largest cluster, ties going to the cluster opened first; the
label is the winner's representative. Empty pool -> no label. ``min_share`` (SRT's consistency
threshold) rejects winners with ``count / pool_size < min_share``.

Departure from the paper: none intended; the paper does not spell out how equivalent but
differently written answers are grouped. We cluster with a (possibly non-transitive)
equivalence such as math-verify, hence the explicit walk order. ``equivalent`` is assumed
reflexive: identical strings are matched without calling it.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

from mgrpo.core._checks import check_number

__all__ = ["Vote", "majority_vote", "vote_groups"]

#: ``equivalent(answer, representative) -> bool``.
EquivalenceFn = Callable[[str, str], bool]


@dataclass(frozen=True)
class Vote:
    """Outcome of :func:`majority_vote`.

    Attributes:
        label: the winning cluster's representative, or None (empty pool or share below
            ``min_share``).
        count: size of the largest cluster (also reported when ``min_share`` rejected it).
        pool_size: number of non-None answers that voted.
        share: ``count / pool_size``; 0.0 for an empty pool.
    """

    label: str | None
    count: int
    pool_size: int
    share: float


def majority_vote(
    answers: Sequence[str | None],
    equivalent: EquivalenceFn,
    min_share: float = 0.0,
) -> Vote:
    """Cluster ``answers`` by ``equivalent`` and return the majority cluster.

    Algorithm (exact, docs/design.md §3): for each non-None answer ``a`` in order, compare it with the
    representatives ``rep_0, rep_1, ...`` of the existing clusters in their opening order and
    join the first ``j`` with ``equivalent(a, rep_j)``; if none matches, open a new cluster with
    ``rep = a``. Winner = largest cluster, ties -> the earliest opened. Deterministic for a
    deterministic ``equivalent``.

    Cost: ``equivalent`` is called at most once per ordered ``(answer, representative)`` pair of
    distinct strings within one vote (results are memoised; a repeated answer string reuses the
    cluster its first occurrence joined, which is exactly what the walk would give again), and
    never for identical strings (``equivalent`` is assumed reflexive).

    Args:
        answers: pool-ordered answers; ``None`` entries are skipped and not counted.
        equivalent: ``equivalent(answer, representative) -> bool``.
        min_share: in ``[0, 1]``; the label is None when the winner's share is below it.

    Returns:
        :class:`Vote`.

    Raises:
        ValueError: an answer is neither ``str`` nor ``None``, or ``min_share`` is outside [0, 1].
    """
    min_share = check_number(min_share, "min_share", low=0.0, high=1.0)
    representatives: list[str] = []  # cluster j's representative
    sizes: list[int] = []  # cluster j's size
    cluster_of: dict[str, int] = {}  # answer string -> cluster it joined (memo of the walk)
    for i, answer in enumerate(answers):
        if answer is None:
            continue
        if not isinstance(answer, str):
            raise ValueError(
                f"answers[{i}] must be str or None, got {type(answer).__name__}: {answer!r}"
            )
        j = cluster_of.get(answer)
        if j is None:
            for c, rep in enumerate(representatives):
                if equivalent(answer, rep):
                    j = c
                    break
            if j is None:
                j = len(representatives)
                representatives.append(answer)
                sizes.append(0)
            cluster_of[answer] = j
        sizes[j] += 1

    pool_size = sum(sizes)
    if pool_size == 0:
        return Vote(label=None, count=0, pool_size=0, share=0.0)
    winner = max(range(len(sizes)), key=lambda c: (sizes[c], -c))  # ties -> opened first
    count = sizes[winner]
    share = count / pool_size
    label = representatives[winner] if share >= min_share else None
    return Vote(label=label, count=count, pool_size=pool_size, share=share)


def vote_groups(
    groups: Sequence[Sequence[str | None]],
    equivalent: EquivalenceFn,
    min_share: float = 0.0,
    keep: Sequence[Sequence[bool]] | None = None,
) -> list[Vote]:
    """One :func:`majority_vote` per group (a prompt's answers in pool order).

    ``keep[i][j]`` False drops answer ``j`` of group ``i`` from the pool (as a ``None`` would);
    ``keep`` None keeps every answer. Returns one :class:`Vote` per group, in order.

    Raises:
        ValueError: ``keep`` does not match ``groups`` in shape, or as :func:`majority_vote`.
    """
    if keep is None:
        return [majority_vote(group, equivalent, min_share=min_share) for group in groups]
    if len(keep) != len(groups) or any(len(k) != len(g) for k, g in zip(keep, groups)):
        raise ValueError("keep must hold one flag per answer of every group")
    return [
        majority_vote([a if k else None for a, k in zip(group, flags)], equivalent, min_share=min_share)
        for group, flags in zip(groups, keep)
    ]
