"""EVOL-RL's novelty-rescaled reward against a loop transcription of the public code
(YujunZhou/EVOL-RL `semantic_novelty.py`: `_compute_novelty_rewards` and
`_compute_similarity_based_rewards`, its two-step min-max included)."""

from __future__ import annotations

import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from mgrpo.core.constants import NOVELTY_DECIMALS
from mgrpo.core.novelty import novelty_rewards, similarity

FAST = settings(deadline=None, max_examples=80, derandomize=True)


def _cos(u, v):
    nu = max(math.sqrt(sum(a * a for a in u)), 1e-8)
    nv = max(math.sqrt(sum(b * b for b in v)), 1e-8)
    return min(max(sum(a * b for a, b in zip(u, v)) / (nu * nv), 0.0), 1.0)


def _ref_similarity_rewards(emb, base):
    """The public code's `_compute_similarity_based_rewards`, as loops."""
    n = len(emb)
    sim = [[_cos(emb[i], emb[j]) for j in range(n)] for i in range(n)]
    correct = [i for i in range(n) if base[i] > 0]
    incorrect = [i for i in range(n) if base[i] <= 0]
    nov = [0.0] * n
    for i in range(n):
        group = [j for j in (correct if base[i] > 0 else incorrect) if j != i]
        others = [j for j in range(n) if j != i]
        avg = (sum(sim[i][j] for j in group) / len(group) if group
               else sum(sim[i][j] for j in others) / len(others))
        mx = max(sim[i][j] for j in others)
        nov[i] = round(1.0 - (0.5 * avg + 0.5 * mx), NOVELTY_DECIMALS)  # ties stay ties
    for idx in (correct, incorrect):  # first normalisation, within each class
        if len(idx) > 1:
            lo, hi = min(nov[i] for i in idx), max(nov[i] for i in idx)
            if hi > lo:
                for i in idx:
                    nov[i] = (nov[i] - lo) / (hi - lo)
        elif idx:
            nov[idx[0]] = 0.5
    out = [0.0] * n
    for idx, low, mid, alone in ((correct, 0.5, 0.75, 1.0), (incorrect, -1.0, -0.75, -0.5)):
        if len(idx) > 1:
            lo, hi = min(nov[i] for i in idx), max(nov[i] for i in idx)
            for i in idx:
                out[i] = low + 0.5 * (nov[i] - lo) / (hi - lo) if hi > lo else mid
        elif idx:
            out[idx[0]] = alone
    return out


def _ref_rewards(emb, matches):
    """The public code's `_compute_novelty_rewards` (invalid = no parsable answer)."""
    n = len(matches)
    base = [1.0 if m else 0.0 for m in matches]
    if n <= 1:
        return base
    invalid = [i for i, m in enumerate(matches) if m is None]
    if not invalid:
        return _ref_similarity_rewards(emb, base)
    out = [-1.0] * n
    valid = [i for i in range(n) if i not in invalid]
    if len(valid) <= 1:
        return out
    for i, r in zip(valid, _ref_similarity_rewards([emb[i] for i in valid],
                                                   [base[i] for i in valid])):
        out[i] = r
    return out


vectors = st.lists(st.integers(-3, 3), min_size=3, max_size=3)
groups = st.lists(st.tuples(vectors, st.sampled_from([True, False, None])), min_size=1,
                  max_size=9)


@FAST
@given(group=groups)
def test_novelty_rewards_match_the_public_code(group) -> None:
    emb = [[float(v) for v in e] for e, _ in group]
    matches = [m for _, m in group]
    got = novelty_rewards(torch.tensor(emb), matches)
    want = _ref_rewards(emb, matches)
    assert got == pytest.approx(want, abs=1e-9)
    if len(matches) == 1:  # a lone rollout keeps its 0/1 vote reward
        assert got == [1.0 if matches[0] else 0.0]
        return
    for r, m in zip(got, matches):  # the ranges of the three classes
        if m is None:
            assert r == -1.0
        elif sum(x is not None for x in matches) > 1:
            assert (0.5 <= r <= 1.0) if m else (-1.0 <= r <= -0.5)


def test_the_more_novel_rollout_of_a_class_gets_more():
    # three matching rollouts: two near-identical, one orthogonal to them -> the top reward
    emb = torch.tensor([[1.0, 0.0], [1.0, 0.01], [0.0, 1.0], [1.0, 1.0]])
    r = novelty_rewards(emb, [True, True, True, False])
    assert r[2] == 1.0 and r[0] < 1.0 and r[1] < 1.0 and r[3] == -0.5  # alone in its class
    # a class whose members are all alike gets the middle of its range
    same = torch.ones(4, 2)
    assert novelty_rewards(same, [True, True, False, False]) == [0.75, 0.75, -0.75, -0.75]


def test_invalid_rollouts_and_the_public_codes_edge_cases():
    emb = torch.randn(4, 3, generator=torch.Generator().manual_seed(0))
    # one valid answer left among invalid ones: every rollout gets -1, that one included
    assert novelty_rewards(emb, [True, None, None, None]) == [-1.0] * 4
    assert novelty_rewards(emb[:1], [True]) == [1.0]  # a lone rollout keeps its vote reward
    assert novelty_rewards(emb[:1], [False]) == [0.0]
    with pytest.raises(ValueError, match="one embedding per rollout"):
        novelty_rewards(emb, [True])


def test_similarity_is_a_clipped_cosine_in_float64():
    s = similarity(torch.tensor([[1.0, 0.0], [-1.0, 0.0], [0.0, 0.0]], dtype=torch.bfloat16))
    assert s.dtype == torch.float64
    assert s[0, 1] == 0.0 and s[0, 0] == 1.0 and s[2, 2] == 0.0  # negative cosine and 0-norm
