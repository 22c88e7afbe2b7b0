"""SCRL's gated labels and rewards, RESTRAIN's weighted pseudo-labels and prompt rule, each
against a loop transcription (SCRL: Jasper-Yan/SCRL `determine_pseudo_labels` + `reward_func`;
RESTRAIN: the formulas of `core/consensus.py`, the paper having no public code)."""

from __future__ import annotations

from collections import Counter

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from mgrpo.core.consensus import (
    restrain_advantages,
    restrain_rewards,
    scrl_labels,
    scrl_rewards,
)

FAST = settings(deadline=None, max_examples=80, derandomize=True)
NO = "__NO_ANSWER__"
pools = st.lists(st.tuples(st.one_of(st.none(), st.sampled_from("0123")),
                           st.integers(0, 4).map(float)), min_size=1, max_size=12)


def _ref_scrl(answers, entropies, tau_pos, tau_marg, tau_low, mode, a_plus, a_minus, lam):
    """SCRL's public code with exact string matching (their answers are simplified strings)."""
    model_answers = [NO if a is None else a for a in answers]
    counter = Counter(model_answers)
    total = len(model_answers)
    props = {a: c / total for a, c in counter.most_common()}
    class_h = {a: sum(h for b, h in zip(model_answers, entropies) if b == a)
               / model_answers.count(a) for a in counter}
    mean_h = sum(entropies) / len(entropies)
    candidates = [(a, c) for a, c in counter.most_common() if a != NO]
    positive = None
    if candidates and props[candidates[0][0]] >= tau_pos:
        if len(candidates) >= 2:
            if props[candidates[0][0]] - props[candidates[1][0]] > tau_marg:
                positive = candidates[0][0]
        else:
            positive = candidates[0][0]
    negatives = [a for a, _ in counter.most_common() if a != positive and a != NO
                 and props[a] < tau_low and class_h[a] >= mean_h]
    rewards = []
    for a in answers:
        if a is None:
            rewards.append(-1.0)
            continue
        pos, neg = a == positive, (a != positive and a in negatives)
        if mode == "binary":
            rewards.append(1.0 if pos else -1.0 if neg else 0.0)
        else:
            pen = lam * (class_h[a] - mean_h)
            rewards.append(a_plus * props[a] - pen if pos
                           else -a_minus * (tau_low - props[a]) - pen if neg else -pen)
    return positive, sorted(negatives), rewards


@FAST
@given(pool=pools, tau_pos=st.sampled_from([0.0, 0.375, 0.5, 0.9]),
       tau_marg=st.sampled_from([0.0, 0.125, 0.15]), tau_low=st.sampled_from([0.125, 0.15, 0.5]),
       mode=st.sampled_from(["binary", "continuous"]))
def test_scrl_matches_the_public_code(pool, tau_pos, tau_marg, tau_low, mode) -> None:
    answers, entropies = [a for a, _ in pool], [h for _, h in pool]
    labels = scrl_labels(answers, entropies, str.__eq__, tau_pos=tau_pos, tau_marg=tau_marg,
                         tau_low=tau_low)
    reps = {c: a for a, c in zip(answers, labels.clusters) if c is not None}
    positive, negatives, want = _ref_scrl(answers, entropies, tau_pos, tau_marg, tau_low, mode,
                                          1.5, 0.5, 0.1)
    assert (None if labels.positive is None else reps[labels.positive]) == positive
    assert sorted(reps[c] for c in labels.negatives) == negatives
    got = scrl_rewards(labels, len(answers), mode=mode, a_plus=1.5, a_minus=0.5, lam=0.1,
                       tau_low=tau_low)
    assert got == pytest.approx(want, abs=1e-12)
    assert scrl_rewards(labels, 2, mode=mode, a_plus=1.5, a_minus=0.5, lam=0.1,
                        tau_low=tau_low) == got[:2]


def test_scrl_positive_needs_strict_consensus_and_negatives_need_uncertainty():
    eq = str.__eq__
    # 5 of 8 agree, the runner-up has 2: share 0.625 >= 0.5 and margin 0.375 > 0.15
    answers = ["7"] * 5 + ["3", "3", "9"]
    low_h, calm_h = [1.0] * 5 + [1.0, 1.0, 3.0], [2.0] * 7 + [0.5]
    labels = scrl_labels(answers, low_h, eq, tau_pos=0.5, tau_marg=0.15, tau_low=0.15)
    assert labels.positive == 0 and labels.negatives == {2}  # "9": rare (1/8) and uncertain
    assert scrl_rewards(labels, 8) == [1.0] * 5 + [0.0, 0.0, -1.0]
    calm = scrl_labels(answers, calm_h, eq, tau_pos=0.5, tau_marg=0.15, tau_low=0.15)
    assert calm.negatives == frozenset()  # rare but more certain than the prompt: no label
    # a narrow lead is no consensus: 4 vs 3 of 8 -> margin 0.125
    split = scrl_labels(["7"] * 4 + ["3"] * 3 + [None], [1.0] * 8, eq, tau_pos=0.5,
                        tau_marg=0.15, tau_low=0.15)
    assert split.positive is None
    assert scrl_rewards(split, 8) == [0.0] * 7 + [-1.0]  # no answer: -1
    with pytest.raises(ValueError, match="mode"):
        scrl_rewards(split, 8, mode="ternary")


def _ref_restrain(pool, s):
    parsed = [a for a in pool if a is not None]
    shares = {a: parsed.count(a) / len(pool) for a in parsed}
    total = sum(p ** s for p in shares.values())
    rewards = [0.0 if a is None else shares[a] ** s / total for a in pool]
    return rewards, max(shares.values(), default=0.0)


@FAST
@given(pools=st.lists(st.lists(st.one_of(st.none(), st.sampled_from("0123")), min_size=1,
                                max_size=10), min_size=1, max_size=4),
       s=st.sampled_from([0.5, 1.0, 2.0, 5.0]))
def test_restrain_rewards_match_the_loop(pools, s) -> None:
    rewards, consistency = restrain_rewards(pools, str.__eq__, s)
    for pool, row, kappa in zip(pools, rewards, consistency):
        want, want_kappa = _ref_restrain(pool, s)
        assert row == pytest.approx(want, abs=1e-12) and kappa == pytest.approx(want_kappa)
        if any(a is not None for a in pool):  # the weights of the clusters sum to 1
            seen = {a: r for a, r in zip(pool, row) if a is not None}
            assert sum(seen.values()) == pytest.approx(1.0)


def test_restrain_sharpness_spans_vote_share_to_majority_vote():
    pool = ["1", "1", "1", "2", "2", None]
    by_share, _ = restrain_rewards([pool], str.__eq__, 1.0)
    assert by_share[0] == pytest.approx([0.6, 0.6, 0.6, 0.4, 0.4, 0.0])  # p_c / sum p
    sharp, _ = restrain_rewards([pool], str.__eq__, 60.0)
    assert sharp[0] == pytest.approx([1, 1, 1, 0, 0, 0], abs=1e-9)  # the majority vote


@FAST
@given(adv=st.lists(st.lists(st.floats(-3, 3), min_size=3, max_size=3), min_size=1,
                    max_size=4),
       data=st.data())
def test_restrain_prompt_rule_matches_the_loop(adv, data) -> None:
    B = len(adv)
    kappa = data.draw(st.lists(st.sampled_from([0.0, 0.25, 0.3, 0.5, 1.0]), min_size=B,
                               max_size=B))
    mask = data.draw(st.lists(st.lists(st.booleans(), min_size=3, max_size=3), min_size=B,
                              max_size=B))
    got = restrain_advantages(torch.tensor(adv), torch.tensor(mask), torch.tensor(kappa),
                              min_consistency=0.3, penalty=0.2)
    for b in range(B):
        for i in range(3):
            want = (kappa[b] * adv[b][i] if kappa[b] >= 0.3
                    else (-0.2 if mask[b][i] else 0.0))
            assert float(got[b, i]) == pytest.approx(want, abs=1e-6)
