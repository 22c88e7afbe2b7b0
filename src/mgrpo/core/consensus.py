"""Label-free rewards that read the whole answer distribution of a prompt, not only its winner
(pure; lists and tensors): SCRL's gated positive and negative labels, RESTRAIN's weighted
pseudo-labels and its prompt-level rule on the advantages.

Per prompt, over its pool of n rollouts (answers clustered by equivalence with the voting walk,
:func:`mgrpo.core.voting.cluster_walk`; ``None`` = no parsable answer), cluster c has the
share ``p_c = |c| / n`` -- n counts the unparsed rollouts too.

**SCRL** (Yan et al. 2026, arXiv 2603.19880; public code Jasper-Yan/SCRL,
``verl/verl/trainer/ppo/scrl_utils.py`` ``determine_pseudo_labels`` and
``verl/verl/utils/reward_score/scrl_math/__init__.py`` ``reward_func``). With the clusters in
decreasing size (ties: opening order, as ``Counter.most_common``), ``H_c`` the mean trajectory
entropy of cluster c and ``Hbar`` the mean over all n rollouts:

    positive label y+ = the largest cluster, if p_1 >= tau_pos and (it is the only cluster or
                        p_1 - p_2 > tau_marg); else none (strict consensus)
    negative set  N-  = {c != y+ : p_c < tau_low and H_c >= Hbar}    (rare AND uncertain)
    binary reward     r_i = +1 (a_i in y+), -1 (a_i in N-), 0 (otherwise), -1 (no answer)
    continuous        r_i = a+ p_c - lam (H_c - Hbar)                   (a_i in y+)
                      r_i = -a- (tau_low - p_c) - lam (H_c - Hbar)      (a_i in N-)
                      r_i = -lam (H_c - Hbar)                          (otherwise)
                      r_i = -1                                          (no answer)

The continuous positive term is the code's ``a_plus * p``; the docstring beside it writes
``a_plus * (p - tau_pos)``, which the code does not compute.

**RESTRAIN** (Yu et al. 2025, arXiv 2510.02172). No public code was found; the paper's
three parts are implemented as follows, and every constant and functional form below is
this project's reading, not the paper's text:

    pseudo-label weighting   w_c = p_c^s / sum_k p_k^s over the parsed clusters (s = the
                             sharpness: s = 1 spreads the reward by vote share, s -> inf is
                             the majority vote); r_i = w_{c(i)}, no answer -> 0
    prompt consistency       kappa_q = max_c p_c (0 when nothing parsed)
    negative penalisation    kappa_q < kappa_min: every rollout of q gets the advantage -delta
    prompt-level weighting   otherwise A_i <- kappa_q A_i (the group advantage, scaled)

The paper computes its prompt weights offline from a frozen reference model; here they come
from the current pool (no offline pass).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch

from mgrpo.core._checks import as_bool_mask, check_number, check_same_shape, check_tensor
from mgrpo.core.voting import cluster_walk

__all__ = ["ScrlLabels", "restrain_advantages", "restrain_rewards", "scrl_labels",
           "scrl_rewards"]

NO_ANSWER_REWARD = -1.0  # SCRL: a rollout without a parsable answer
SCRL_MODES = ("binary", "continuous")

EquivalenceFn = Callable[[str, str], bool]


def _shares(clusters: list[int | None], n_clusters: int) -> list[float]:
    """p_c = |c| / n, n counting the unparsed rollouts too."""
    sizes = [0] * n_clusters
    for c in clusters:
        if c is not None:
            sizes[c] += 1
    return [size / len(clusters) for size in sizes]


# ------------------------------------------------------------------------------------ SCRL


@dataclass(frozen=True)
class ScrlLabels:
    """SCRL's labels of one prompt's pool (module docstring)."""

    clusters: list[int | None]  # (n,) cluster of each answer, None = no answer
    shares: list[float]  # p_c per cluster
    class_entropy: list[float]  # H_c per cluster
    mean_entropy: float  # Hbar over all n rollouts
    positive: int | None  # the cluster of y+, None = no positive label
    negatives: frozenset[int]  # the clusters of N-


def scrl_labels(answers: Sequence[str | None], entropies: Sequence[float],
                equivalent: EquivalenceFn, *, tau_pos: float, tau_marg: float,
                tau_low: float) -> ScrlLabels:
    """SCRL's positive label and negative set of one prompt's pool (module docstring)."""
    if len(answers) != len(entropies) or not answers:
        raise ValueError(f"one entropy per answer (and at least one answer): {len(answers)} "
                         f"answers, {len(entropies)} entropies")
    for name, value in (("tau_pos", tau_pos), ("tau_marg", tau_marg), ("tau_low", tau_low)):
        check_number(value, name, low=0.0, high=1.0)
    reps, clusters = cluster_walk(answers, equivalent)
    shares = _shares(clusters, len(reps))
    class_entropy = []
    for c in range(len(reps)):
        members = [float(h) for h, k in zip(entropies, clusters) if k == c]
        class_entropy.append(sum(members) / len(members))
    mean_entropy = sum(float(h) for h in entropies) / len(entropies)
    order = sorted(range(len(reps)), key=lambda c: -shares[c])  # stable: opening order
    positive = None
    if order and shares[order[0]] >= tau_pos and (
            len(order) == 1 or shares[order[0]] - shares[order[1]] > tau_marg):
        positive = order[0]
    negatives = frozenset(c for c in range(len(reps)) if c != positive
                          and shares[c] < tau_low and class_entropy[c] >= mean_entropy)
    return ScrlLabels(clusters, shares, class_entropy, mean_entropy, positive, negatives)


def scrl_rewards(labels: ScrlLabels, rewarded: int, *, mode: str = "binary",
                 a_plus: float = 1.0, a_minus: float = 1.0, lam: float = 0.1,
                 tau_low: float = 0.15) -> list[float]:
    """SCRL rewards of the first ``rewarded`` rollouts of the pool (module docstring)."""
    if mode not in SCRL_MODES:
        raise ValueError(f"mode must be one of {SCRL_MODES}, got {mode!r}")
    out = []
    for c in labels.clusters[:rewarded]:
        if c is None:
            out.append(NO_ANSWER_REWARD)
        elif mode == "binary":
            out.append(1.0 if c == labels.positive else -1.0 if c in labels.negatives else 0.0)
        else:
            r = -lam * (labels.class_entropy[c] - labels.mean_entropy)
            if c == labels.positive:
                r += a_plus * labels.shares[c]
            elif c in labels.negatives:
                r -= a_minus * (tau_low - labels.shares[c])
            out.append(r)
    return out


# -------------------------------------------------------------------------------- RESTRAIN


def restrain_rewards(pools: Sequence[Sequence[str | None]], equivalent: EquivalenceFn,
                     sharpness: float, rewarded: int | None = None
                     ) -> tuple[list[list[float]], list[float]]:
    """RESTRAIN's weighted pseudo-label rewards and each prompt's consistency.

    Returns ``(rewards, consistency)``: ``rewards[b][i] = w_{c(i)}`` for the first
    ``rewarded`` answers of pool b (all when None), 0 without an answer;
    ``consistency[b] = max_c p_c`` (0 when nothing parsed). Module docstring."""
    check_number(sharpness, "sharpness", low=0.0, low_open=True)
    rewards, consistency = [], []
    for pool in pools:
        reps, clusters = cluster_walk(pool, equivalent)
        shares = _shares(clusters, len(reps)) if pool else []
        powered = [p ** sharpness for p in shares]
        total = sum(powered)
        weights = [w / total for w in powered] if total > 0 else powered
        take = clusters if rewarded is None else clusters[:rewarded]
        rewards.append([0.0 if c is None else weights[c] for c in take])
        consistency.append(max(shares, default=0.0))
    return rewards, consistency


def restrain_advantages(advantages: torch.Tensor, in_loss: torch.Tensor,
                        consistency: torch.Tensor, *, min_consistency: float,
                        penalty: float) -> torch.Tensor:
    """(B, M) advantages after RESTRAIN's prompt-level rule (module docstring):
    ``kappa_b * A`` where ``kappa_b >= min_consistency``, else ``-penalty`` on the prompt's
    rollouts in the loss set (0 outside it). ``consistency`` (B,) in [0, 1]."""
    check_tensor(advantages, "advantages", ndim=2)
    mask = as_bool_mask(in_loss, "in_loss")
    check_same_shape(advantages, "advantages", mask, "in_loss")
    check_tensor(consistency, "consistency", ndim=1)
    if consistency.shape[0] != advantages.shape[0]:
        raise ValueError(f"one consistency per prompt: {consistency.shape[0]} for "
                         f"{advantages.shape[0]} prompts")
    check_number(min_consistency, "min_consistency", low=0.0, high=1.0)
    check_number(penalty, "penalty", low=0.0)
    kappa = consistency.to(advantages.device, advantages.dtype).unsqueeze(1)  # (B, 1)
    low = (kappa < min_consistency).expand_as(advantages)
    penalised = torch.full_like(advantages, -float(penalty)) * mask
    return torch.where(low, penalised, kappa * advantages)
