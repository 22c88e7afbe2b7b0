"""Majority vote over final answers with an equivalence function (docs/design.md §3).

The pool is the sequence of kept rollouts' answers in order (policy 0..M-1, then momentum
0..N-1); ``None`` (no parsable answer) is skipped. Walking the pool, each answer joins the FIRST
cluster whose representative it is equivalent to, else opens a new cluster with itself as
representative. The winner is the largest cluster, ties going to the cluster opened first; the
label is the winner's representative. Empty pool -> no label. ``min_share`` (SRT's consistency
threshold) rejects winners with ``count / pool_size < min_share``.

Options beyond the paper (defaults reproduce the rule above bit for bit):

- ``momentum_weight`` w: answers at pool positions ``>= momentum_from`` (the momentum rollouts)
  count w times, in the cluster sizes and in ``pool_size`` alike (w = 3 with N = G/4 momentum
  rollouts gives the momentum model the vote share of N = G/2 at w = 1).
- ``ties`` (``VOTE_TIES``), among the clusters of maximal size: ``policy-first`` (default) the
  cluster opened first in pool order, i.e. policy 0..M-1 then momentum 0..N-1;
  ``momentum-first`` the cluster met first in the order momentum 0..N-1, then policy 0..M-1;
  ``random`` a uniform choice, ``random.Random(seed)``, so the same seed gives the same label.
  The clusters and their representatives are the same under every rule; only the winner moves.

Departure from the paper: none intended; the paper does not spell out how equivalent but
differently written answers are grouped. We cluster with a (possibly non-transitive)
equivalence such as math-verify, hence the explicit walk order. ``equivalent`` is assumed
reflexive: identical strings are matched without calling it.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import torch

from mgrpo.core._checks import check_number
from mgrpo.registry import Registry

__all__ = ["VOTE_TIES", "Vote", "agreement", "cluster_walk", "majority_vote", "vote_groups"]

#: ``rule(tied, first_momentum, seed) -> winner``: the winning cluster among ``tied`` (cluster
#: indices in opening order, >= 2 of them); ``first_momentum[c]`` is the pool index of cluster
#: c's first momentum answer (None: it has none); ``seed`` is the vote's tie seed.
TieRule = Callable[[list[int], list["int | None"], "int | None"], int]

#: Tie rules of :func:`majority_vote` (module docstring); ``policy-first`` is the default.
VOTE_TIES: Registry[TieRule] = Registry("vote tie rule")

#: ``equivalent(answer, representative) -> bool``.
EquivalenceFn = Callable[[str, str], bool]


@dataclass(frozen=True)
class Vote:
    """Outcome of :func:`majority_vote`.

    Attributes:
        label: the winning cluster's representative, or None (empty pool or share below
            ``min_share``).
        count: size of the largest cluster (also reported when ``min_share`` rejected it);
            with ``momentum_weight`` w a momentum answer adds w.
        pool_size: number of non-None answers that voted (weighted like ``count``).
        share: ``count / pool_size``; 0.0 for an empty pool.
        tie: another cluster has the winner's size (the tie rule chose); not part of ``==``.
    """

    label: str | None
    count: float
    pool_size: float
    share: float
    tie: bool = field(default=False, compare=False)


def majority_vote(
    answers: Sequence[str | None],
    equivalent: EquivalenceFn,
    min_share: float = 0.0,
    *,
    momentum_from: int | None = None,
    momentum_weight: float = 1.0,
    ties: str = "policy-first",
    seed: int | None = None,
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
        momentum_from: pool index of the first momentum answer; None = no momentum answers.
        momentum_weight: weight ``> 0`` of each momentum answer (1 = one vote each).
        ties: a name in ``VOTE_TIES``.
        seed: seed of the ``random`` tie rule (required by it, ignored by the others).

    Returns:
        :class:`Vote`.

    Raises:
        ValueError: an answer is neither ``str`` nor ``None``, ``min_share`` is outside [0, 1],
            ``momentum_weight <= 0``, ``ties`` is unknown, or ``ties="random"`` without a seed.
    """
    min_share = check_number(min_share, "min_share", low=0.0, high=1.0)
    momentum_weight = check_number(momentum_weight, "momentum_weight", low=0.0, low_open=True)
    _check_ties(ties, seed)
    start = len(answers) if momentum_from is None else momentum_from
    # int 1 at weight 1, so counts and shares are bit-identical to the unweighted vote
    w_momentum: float = 1 if momentum_weight == 1.0 else momentum_weight
    representatives, clusters = cluster_walk(answers, equivalent)
    sizes: list[float] = [0] * len(representatives)  # cluster j's (weighted) size
    first_momentum: list[int | None] = [None] * len(representatives)  # first momentum index
    for i, j in enumerate(clusters):
        if j is None:
            continue
        if i >= start:
            sizes[j] += w_momentum
            if first_momentum[j] is None:
                first_momentum[j] = i
        else:
            sizes[j] += 1

    pool_size = sum(sizes)
    if pool_size == 0:
        return Vote(label=None, count=0, pool_size=0, share=0.0)
    best = max(sizes)
    tied = [c for c, size in enumerate(sizes) if size == best]  # in opening order
    winner = _break_tie(tied, first_momentum, ties, seed)
    count = sizes[winner]
    share = count / pool_size
    label = representatives[winner] if share >= min_share else None
    return Vote(label=label, count=count, pool_size=pool_size, share=share, tie=len(tied) > 1)


def cluster_walk(
    answers: Sequence[str | None], equivalent: EquivalenceFn
) -> tuple[list[str], list[int | None]]:
    """The clustering walk of :func:`majority_vote`: ``(representatives, cluster of each answer)``.

    ``clusters[i]`` is the index (opening order) of the cluster answer ``i`` joined, None for a
    None answer. Same memo and call rules as :func:`majority_vote`.

    Raises:
        ValueError: an answer is neither ``str`` nor ``None``.
    """
    representatives: list[str] = []  # cluster j's representative
    clusters: list[int | None] = []
    cluster_of: dict[str, int] = {}  # answer string -> cluster it joined (memo of the walk)
    for i, answer in enumerate(answers):
        if answer is None:
            clusters.append(None)
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
            cluster_of[answer] = j
        clusters.append(j)
    return representatives, clusters


def _check_ties(ties: str, seed: int | None) -> None:
    VOTE_TIES.get(ties)  # an unknown rule lists the valid ones
    if ties == "random" and seed is None:
        raise ValueError("vote tie rule 'random' needs a seed")


def _break_tie(tied: list[int], first_momentum: list[int | None], ties: str, seed: int | None) -> int:
    """The winner among ``tied`` (cluster indices in opening order) by rule ``ties``."""
    if len(tied) == 1:
        return tied[0]
    return VOTE_TIES.get(ties)(tied, first_momentum, seed)


@VOTE_TIES.register("policy-first")
def policy_first(tied: list[int], first_momentum: list[int | None], seed: int | None) -> int:
    """The cluster opened first in pool order (policy 0..M-1, then momentum 0..N-1)."""
    return tied[0]


@VOTE_TIES.register("momentum-first")
def momentum_first(tied: list[int], first_momentum: list[int | None], seed: int | None) -> int:
    """The cluster met first in the order momentum 0..N-1, then policy 0..M-1."""
    with_momentum = [c for c in tied if first_momentum[c] is not None]
    if with_momentum:
        return min(with_momentum, key=lambda c: first_momentum[c])
    return tied[0]


@VOTE_TIES.register("random")
def random_tie(tied: list[int], first_momentum: list[int | None], seed: int | None) -> int:
    """A uniform choice, ``random.Random(seed)``: the same seed gives the same winner."""
    return random.Random(seed).choice(tied)


def vote_groups(
    groups: Sequence[Sequence[str | None]],
    equivalent: EquivalenceFn,
    min_share: float = 0.0,
    keep: Sequence[Sequence[bool]] | None = None,
    *,
    momentum_from: int | None = None,
    momentum_weight: float = 1.0,
    ties: str = "policy-first",
    seeds: Sequence[int] | None = None,
) -> list[Vote]:
    """One :func:`majority_vote` per group (a prompt's answers in pool order).

    ``keep[i][j]`` False drops answer ``j`` of group ``i`` from the pool (as a ``None`` would);
    ``keep`` None keeps every answer. ``momentum_from``, ``momentum_weight`` and ``ties`` are
    passed to every vote; ``seeds[i]`` is group ``i``'s tie seed (needed by ``ties="random"``).
    Returns one :class:`Vote` per group, in order.

    Raises:
        ValueError: ``keep`` or ``seeds`` does not match ``groups``, or as :func:`majority_vote`.
    """
    if keep is not None and (
        len(keep) != len(groups) or any(len(k) != len(g) for k, g in zip(keep, groups))
    ):
        raise ValueError("keep must hold one flag per answer of every group")
    if seeds is not None and len(seeds) != len(groups):
        raise ValueError(f"seeds must hold one seed per group ({len(groups)}), got {len(seeds)}")
    if ties == "random" and seeds is None:
        raise ValueError("vote tie rule 'random' needs seeds (one per group)")
    pools = groups if keep is None else [
        [a if k else None for a, k in zip(group, flags)] for group, flags in zip(groups, keep)
    ]
    return [
        majority_vote(pool, equivalent, min_share=min_share, momentum_from=momentum_from,
                      momentum_weight=momentum_weight, ties=ties,
                      seed=None if seeds is None else seeds[i])
        for i, pool in enumerate(pools)
    ]


def agreement(
    answers: Sequence[Sequence[str | None]],
    targets: Sequence[str | None],
    equivalent: EquivalenceFn,
    device: torch.device | None = None,
) -> torch.Tensor:
    """``(B, M)`` fp32: 1.0 where ``answers[b][i]`` is equivalent to ``targets[b]`` (a vote's
    pseudo-label or the ground truth), else 0.0; a None target or answer gives 0. On
    ``device`` (the rollouts' device in the step)."""
    if len(answers) != len(targets):
        raise ValueError(f"one target per group: {len(answers)} groups, {len(targets)} targets")
    rows = [
        [float(t is not None and a is not None and equivalent(a, t)) for a in row]
        for row, t in zip(answers, targets)
    ]
    return torch.tensor(rows, dtype=torch.float32, device=device)  # (B, M)
