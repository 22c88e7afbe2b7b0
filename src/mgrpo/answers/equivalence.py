"""The equivalence that majority votes use, in training and in evaluation alike.

:meth:`Equivalence.for_kind` is THE constructor of the vote equivalence for a dataset's answer
kind: the training step and evaluation both build theirs with it, so option letters of a
``choice`` dataset never reach math-verify in either.

:class:`Equivalence` is ``equivalent(answer, representative) -> bool`` for
:func:`mgrpo.core.voting.majority_vote`: identical strings are equivalent without a checker
call; ``kind="choice"`` compares option letters case-insensitively; any other pair is decided
by the checker (``AnswerChecker.equivalent``) once and memoised for the object's lifetime.
:meth:`Equivalence.prefetch` decides every ordered pair of distinct answers within each group
in one batched ``equivalent_many`` call (evaluation votes over all pairs anyway; the training
step calls lazily, since the vote compares an answer only with cluster representatives).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from mgrpo.answers.extract import ANSWER_KINDS

__all__ = ["Equivalence"]


class Equivalence:
    """Memoised ``equivalent(a, b)`` over a checker (see the module docstring)."""

    def __init__(self, checker: Any, *, kind: str | None = None) -> None:
        self.checker = checker
        self.kind = kind
        self.memo: dict[tuple[str, str], bool] = {}

    @classmethod
    def for_kind(cls, checker: Any, kind: str) -> Equivalence:
        """The vote equivalence for answers of ``kind`` (one of ``ANSWER_KINDS``).

        Raises:
            ValueError: ``kind`` is not an answer kind (the message lists the valid ones).
        """
        if kind not in ANSWER_KINDS:
            raise ValueError(f"unknown answer kind {kind!r}; valid kinds: {', '.join(ANSWER_KINDS)}")
        return cls(checker, kind=kind)

    def __call__(self, a: str, b: str) -> bool:
        if a == b:
            return True
        if self.kind == "choice":
            return a.strip().upper() == b.strip().upper()
        key = (a, b)
        if key not in self.memo:
            self.memo[key] = bool(self.checker.equivalent(a, b))
        return self.memo[key]

    def prefetch(self, groups: Sequence[Sequence[str | None]]) -> None:
        """Decide all ordered pairs of distinct non-None answers within each group, batched.

        Does nothing for ``kind="choice"`` (no checker involved) or when no group holds two
        distinct answers.
        """
        if self.kind == "choice":
            return
        pairs = sorted(
            {
                (a, b)
                for group in groups
                for a in group
                if a is not None
                for b in group
                if b is not None and a != b and (a, b) not in self.memo
            }
        )
        if pairs:
            self.memo.update(zip(pairs, map(bool, self.checker.equivalent_many(pairs)), strict=True))
