"""Clipped policy-gradient loss with a k3 KL penalty and three aggregations (docs/design.md §3).

Per response token t of a rollout in the loss set (``mask == 1``):

    ratio = exp(logp - logp_old)
    pg    = -min(ratio * A, clip(ratio, 1 - eps_low, 1 + eps_high) * A)
    kl    = exp(ref - logp) - (ref - logp) - 1                         (k3, >= 0)
    l     = w * e * pg + beta * kl - c * e * H                         beta = ``kl_coef``

``eps_low`` / ``eps_high`` are ``clip_low`` / ``clip_high`` (DAPO's clip-higher), each
defaulting to the symmetric ``clip``. ``H`` is the token entropy of the current policy (with
its gradient) and ``c = entropy_coef`` a static entropy bonus (verl's ``entropy_coeff``); the
term is absent (not computed) when ``entropy`` is None or ``c == 0``. ``w`` is the rollout
correction's truncated importance weight (``is_weights``, `core.correction`, no gradient;
1 when None), applied to the policy-gradient term only, as TRL and verl do. ``e`` is a token
mask (``token_mask``, no gradient; 1 when None): top-entropy masking (TRL's
``top_entropy_quantile``, `core.entropy.top_entropy_mask`) keeps the policy-gradient term and the
entropy bonus only on the highest-entropy tokens; the KL term and the normalisers keep every
loss token, as in TRL (masked tokens count in the token-mean denominator with value 0).

The importance ratio has two levels (``ratio_level``, one of ``RATIO_LEVELS``):

- ``token`` (default): ``ratio_t = exp(logp_t - logp_old_t)`` as above.
- ``sequence`` (GSPO, Zheng et al. 2025, arXiv 2507.18071; TRL's
  ``importance_sampling_level="sequence"``, verl's ``loss_mode="gspo"``): one ratio per rollout,
  the geometric mean of its token ratios, ``s = exp(mean_t (logp_t - logp_old_t))`` over its loss
  tokens. It enters every token in verl's "GSPO-token" form,
  ``ratio_t = exp(sg[log s] + logp_t - sg[logp_t])``: the value is ``s`` on every token and the
  gradient of ``ratio_t`` with respect to ``logp_t`` is ``s`` (``sg`` = stop-gradient), so the
  clip decision is made once per sequence. Under any aggregation that weights a sequence's
  tokens equally (all three below) this is the gradient of TRL's form (``s(theta)`` broadcast
  over the tokens); the two differ only where tokens of one sequence are weighted differently
  (``token_mask``, token-level ``is_weights``), where a masked token here gets no gradient.
  GSPO's objective averages over sequences: use ``seq-mean-token-mean`` (verl forces it). No
  clamp on ``log s`` (verl clamps it at 10; TRL does not).

and two surrogate objectives (``loss_mode``, one of ``POLICY_LOSSES``):

- ``ppo`` (default): the clipped surrogate above.
- ``cispo`` (MiniMax-M1, arXiv 2506.13585; verl's ``compute_policy_loss_cispo``, TRL's
  ``loss_type="cispo"``): ``pg = -sg[clip(ratio, 1 - eps_low, 1 + eps_high)] * A * logp``. The
  clipped ratio is a constant weight, so every token keeps a gradient (``-w A grad logp``);
  clipping bounds the weight instead of dropping the token. Two-sided, as in the paper and
  verl; TRL's one-sided cap ``min(ratio, epsilon_high)`` is ``clip_low`` 1 with
  ``clip_high`` = its cap - 1. The loss value is ``-w A logp``, not a ratio, so ``pg_loss``
  reads differently from ``ppo``'s.

The KL estimate is one of ``KL_ESTIMATORS`` (``kl_estimator``), with ``d = ref - logp``:

- ``k3`` (default): ``exp(d) - d - 1``, unclamped (Schulman's k3; the paper's KL).
- ``low_var_kl`` (verl's ``kl_penalty="low_var_kl"``, which Co-rewarding's scripts use):
  ``clamp(exp(d') - d' - 1, -10, 10)`` with ``d' = clamp(d, -20, 20)``. It equals k3 wherever
  ``|d| <= 20`` and the value is ``<= 10``; beyond, its gradient is 0.

and the per-token values are reduced by one of ``LOSS_AGGREGATIONS``:

- ``token-mean`` (default, verl): ``sum_{r,t} m l / sum_{r,t} m`` over the whole mini-batch.
- ``seq-mean-token-mean`` (GRPO paper): mean over the sequences with >= 1 loss token of each
  sequence's token mean.
- ``seq-mean-token-sum-norm`` (Dr. GRPO): each sequence's token sum divided by the padded length
  T (or ``norm_length``), then the mean over the sequences with >= 1 loss token.

Gradient accumulation: a mini-batch split into micro-batches gives the same gradient as one
batch if every micro-batch passes the mini-batch totals: ``num_tokens_global`` (loss tokens,
read by ``token-mean``) and ``num_seqs_global`` (sequences with >= 1 loss token, read by the two
``seq-*`` aggregations); the per-micro-batch losses are then summed, not averaged. For
``seq-mean-token-sum-norm`` also pass a fixed ``norm_length`` (e.g. max_new_tokens) if the
micro-batches are padded to different lengths.

Departures from the paper: none in the formulas. The KL term is skipped entirely (not
computed) when ``logp_ref`` is None or ``kl_coef == 0``; there is no clamp on the k3 value
(``low_var_kl`` is the clamped one).

The defaults (``token``, ``ppo``, no ``token_mask``) run exactly the arithmetic of the plain
clipped loss; each option changes only its own term.
"""

from __future__ import annotations

from collections.abc import Callable

import torch

from mgrpo.core._checks import as_bool_mask, check_int, check_number, check_same_shape, check_tensor
from mgrpo.core.constants import DEFAULT_CLIP, DEFAULT_KL_COEF, DEFAULT_LOSS_AGG, compute_dtype
from mgrpo.registry import Registry

__all__ = [
    "KL_ESTIMATORS",
    "LOSS_AGGREGATIONS",
    "POLICY_LOSSES",
    "RATIO_LEVELS",
    "get_loss_aggregation",
    "policy_loss",
    "seq_mean_token_mean",
    "seq_mean_token_sum_norm",
    "sequence_log_ratio",
    "token_mean",
]

#: The levels of the importance ratio (module docstring).
RATIO_LEVELS = ("token", "sequence")

#: ``agg(values (R, T), mask (R, T) bool, *, num_tokens_global, num_seqs_global, norm_length)``
#: ``-> scalar``. Each aggregation reads only the normaliser it needs and ignores the others.
LossAggregation = Callable[..., torch.Tensor]
#: ``estimate(d (R, T)) -> (R, T)``: a per-token KL estimate of ``d = ref - logp``.
KLEstimate = Callable[[torch.Tensor], torch.Tensor]

#: Registry of loss aggregations, ``name -> aggregation``.
LOSS_AGGREGATIONS: Registry[LossAggregation] = Registry("loss aggregation")
#: Registry of per-token KL estimates of ``d = ref - logp``, ``name -> estimate``.
KL_ESTIMATORS: Registry[KLEstimate] = Registry("KL estimator")
#: ``surrogate(ratio (R, T), logp (R, T), adv (R, T), low, high) -> (pg (R, T), clipped (R, T))``:
#: the per-token policy-gradient term and where its clip is active (both 0 / False where
#: ``adv`` and ``logp`` were zeroed, i.e. outside the loss mask).
Surrogate = Callable[[torch.Tensor, torch.Tensor, torch.Tensor, float, float],
                     tuple[torch.Tensor, torch.Tensor]]
#: Registry of the surrogate objectives, ``name -> surrogate`` (module docstring).
POLICY_LOSSES: Registry[Surrogate] = Registry("policy loss")


def _positive_or_one(value: float | None, local: torch.Tensor) -> torch.Tensor | float:
    """Normaliser: the global count when given, else the local count; 0 -> 1 (the sum is 0)."""
    if value is None:
        return local.clamp_min(1)
    return value if value > 0 else 1.0


@LOSS_AGGREGATIONS.register("token-mean")
def token_mean(
    values: torch.Tensor,
    mask: torch.Tensor,
    *,
    num_tokens_global: float | None = None,
    num_seqs_global: float | None = None,
    norm_length: int | None = None,
) -> torch.Tensor:
    """``sum(mask * values) / N`` with N = ``num_tokens_global`` or ``mask.sum()`` (0 -> 1)."""
    del num_seqs_global, norm_length  # not used by this aggregation
    total = torch.where(mask, values, values.new_zeros(())).sum()
    return total / _positive_or_one(num_tokens_global, mask.sum().to(values.dtype))


@LOSS_AGGREGATIONS.register("seq-mean-token-mean")
def seq_mean_token_mean(
    values: torch.Tensor,
    mask: torch.Tensor,
    *,
    num_tokens_global: float | None = None,
    num_seqs_global: float | None = None,
    norm_length: int | None = None,
) -> torch.Tensor:
    """``sum_r [sum_t m v / sum_t m] / S`` over sequences with >= 1 loss token.

    S = ``num_seqs_global`` or the local number of such sequences (0 -> 1).
    """
    del num_tokens_global, norm_length
    counts = mask.sum(dim=-1).to(values.dtype)  # (R,)
    seq_sum = torch.where(mask, values, values.new_zeros(())).sum(dim=-1)  # (R,)
    seq_mean = seq_sum / counts.clamp_min(1)  # (R,); 0 for sequences with no loss token
    n_seqs = (counts > 0).sum().to(values.dtype)
    return seq_mean.sum() / _positive_or_one(num_seqs_global, n_seqs)


@LOSS_AGGREGATIONS.register("seq-mean-token-sum-norm")
def seq_mean_token_sum_norm(
    values: torch.Tensor,
    mask: torch.Tensor,
    *,
    num_tokens_global: float | None = None,
    num_seqs_global: float | None = None,
    norm_length: int | None = None,
) -> torch.Tensor:
    """``sum_r [sum_t m v / L] / S`` (Dr. GRPO), L = ``norm_length`` or the padded length T.

    S = ``num_seqs_global`` or the local number of sequences with >= 1 loss token (0 -> 1).
    """
    del num_tokens_global
    length = norm_length if norm_length is not None else max(values.shape[-1], 1)
    seq_sum = torch.where(mask, values, values.new_zeros(())).sum(dim=-1)  # (R,)
    n_seqs = mask.any(dim=-1).sum().to(values.dtype)
    return (seq_sum / length).sum() / _positive_or_one(num_seqs_global, n_seqs)


def get_loss_aggregation(name: str) -> LossAggregation:
    """Look up an aggregation by name; unknown names raise a ValueError listing the valid ones."""
    return LOSS_AGGREGATIONS.get(name)


@KL_ESTIMATORS.register("k3")
def k3_kl(delta: torch.Tensor) -> torch.Tensor:
    """``exp(d) - d - 1`` (>= 0) of ``d = ref - logp``, elementwise, unclamped."""
    return delta.exp() - delta - 1.0


@KL_ESTIMATORS.register("low_var_kl")
def low_var_kl(delta: torch.Tensor) -> torch.Tensor:
    """verl's ``low_var_kl``: ``clamp(k3(clamp(d, -20, 20)), -10, 10)``, elementwise."""
    return k3_kl(delta.clamp(-20.0, 20.0)).clamp(-10.0, 10.0)


@POLICY_LOSSES.register("ppo")
def ppo_surrogate(ratio: torch.Tensor, logp: torch.Tensor, adv: torch.Tensor, low: float,
                  high: float) -> tuple[torch.Tensor, torch.Tensor]:
    """``-min(ratio A, clip(ratio, 1 - low, 1 + high) A)``; clipped where the clipped term is
    the larger loss (it then gets no gradient). ``logp`` is not read."""
    del logp
    pg_unclipped = -adv * ratio  # (R, T)
    pg_clipped = -adv * ratio.clamp(1.0 - low, 1.0 + high)  # (R, T)
    return torch.maximum(pg_unclipped, pg_clipped), pg_clipped > pg_unclipped


@POLICY_LOSSES.register("cispo")
def cispo_surrogate(ratio: torch.Tensor, logp: torch.Tensor, adv: torch.Tensor, low: float,
                    high: float) -> tuple[torch.Tensor, torch.Tensor]:
    """``-sg[clip(ratio, 1 - low, 1 + high)] A logp``; clipped where the weight was truncated
    (verl's ``pg_clipfrac`` of CISPO: the token still has a gradient)."""
    weight = ratio.detach().clamp(1.0 - low, 1.0 + high)  # (R, T), no gradient
    return -weight * adv * logp, weight != ratio.detach()


def sequence_log_ratio(log_ratio: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """``(R,)`` GSPO's ``log s = sum_t m_t d_t / max(sum_t m_t, 1)`` of ``d = logp - logp_old``
    ``(R, T)`` over the loss tokens (``mask``, bool); 0 for a row with no loss token. Values
    under ``mask == 0`` are not read."""
    zero = log_ratio.new_zeros(())
    counts = mask.sum(dim=-1).to(log_ratio.dtype).clamp_min(1)  # (R,)
    return torch.where(mask, log_ratio, zero).sum(dim=-1) / counts


def _check_count(value: float | None, name: str) -> float | None:
    return None if value is None else check_number(value, name, low=0.0)


def policy_loss(
    logp: torch.Tensor,
    logp_old: torch.Tensor,
    logp_ref: torch.Tensor | None,
    advantages: torch.Tensor,
    mask: torch.Tensor,
    clip: float = DEFAULT_CLIP,
    kl_coef: float = DEFAULT_KL_COEF,
    agg: str = DEFAULT_LOSS_AGG,
    *,
    kl_estimator: str = "k3",
    clip_low: float | None = None,
    clip_high: float | None = None,
    entropy: torch.Tensor | None = None,
    entropy_coef: float = 0.0,
    num_tokens_global: float | None = None,
    num_seqs_global: float | None = None,
    norm_length: int | None = None,
    is_weights: torch.Tensor | None = None,
    ratio_level: str = "token",
    loss_mode: str = "ppo",
    token_mask: torch.Tensor | None = None,
) -> tuple[torch.Tensor, dict[str, float]]:
    """Clipped PG loss + ``kl_coef`` * k3 KL, aggregated by ``agg`` (formulas: module docstring).

    Args:
        logp: ``(R, T)`` log-probs of the sampled tokens under the current policy (with grad).
        logp_old: ``(R, T)`` log-probs under the policy that sampled (treated as constant).
        logp_ref: ``(R, T)`` log-probs under the frozen reference model, or None (no KL).
        advantages: ``(R,)`` one advantage per rollout (treated as constant).
        mask: ``(R, T)`` bool / 0-1; 0 on padding and on rollouts outside the loss set.
            Values under ``mask == 0`` never reach the loss or its gradient (NaN-safe).
        clip: PPO epsilon ``>= 0``.
        clip_low: lower epsilon (ratio >= 1 - clip_low); None = ``clip``.
        clip_high: upper epsilon (ratio <= 1 + clip_high); None = ``clip``.
        entropy: ``(R, T)`` token entropies of the current policy (with grad), or None.
        entropy_coef: entropy bonus coefficient ``>= 0``; 0 (default) skips the term.
        kl_coef: KL coefficient ``>= 0``; 0 skips the KL computation.
        kl_estimator: a name in ``KL_ESTIMATORS`` (``k3`` or ``low_var_kl``).
        agg: a name in ``LOSS_AGGREGATIONS``.
        num_tokens_global: total loss tokens over all micro-batches of the mini-batch
            (``token-mean``); None = this call's ``mask.sum()``.
        num_seqs_global: total sequences with >= 1 loss token over all micro-batches
            (``seq-*`` aggregations); None = this call's count.
        norm_length: the Dr. GRPO length normaliser; None = the padded length T.
        is_weights: ``(R, T)`` rollout-correction weights multiplying each token's pg term
            (treated as constant), or None (weight 1).
        ratio_level: ``token`` or ``sequence`` (GSPO), one of ``RATIO_LEVELS``.
        loss_mode: ``ppo`` or ``cispo``, a name in ``POLICY_LOSSES``.
        token_mask: ``(R, T)`` bool / 0-1: the tokens whose pg term and entropy bonus count
            (top-entropy masking), or None (every loss token).

    Returns:
        ``(loss, metrics)``: ``loss`` a 0-dim fp32 tensor (fp64 for fp64 logp). A mask with no
        token gives ``loss == 0`` that still has a grad path (zero gradients), never NaN.
        ``metrics`` (python floats): ``pg_loss`` and ``kl`` (each aggregated like the loss, so
        ``loss = pg_loss + kl_coef * kl``; ``kl`` is 0.0 when the KL is skipped),
        ``clip_fraction`` (share of loss tokens whose clipped term is active, i.e. gets zero
        gradient; ``cispo``: whose weight was truncated), ``ratio_mean`` / ``ratio_min`` /
        ``ratio_max`` over loss tokens (1.0 when there are none; ``sequence``: each token
        carries its sequence's ratio), ``num_tokens`` and ``num_seqs`` (local counts),
        ``entropy`` (the token entropy aggregated like the loss; 0.0 when the bonus is off),
        and with a ``token_mask`` ``token_mask_tokens`` (the loss tokens it keeps).

    Raises:
        ValueError: bad shapes, negative ``clip`` / ``kl_coef`` / counts, unknown ``agg`` or
            ``kl_estimator``.
    """
    aggregate = get_loss_aggregation(agg)
    estimate_kl = KL_ESTIMATORS.get(kl_estimator)
    surrogate = POLICY_LOSSES.get(loss_mode)
    if ratio_level not in RATIO_LEVELS:
        raise ValueError(f"unknown ratio level {ratio_level!r}; valid: {', '.join(RATIO_LEVELS)}")
    check_tensor(logp, "logp", ndim=2)
    check_tensor(logp_old, "logp_old", ndim=2)
    check_same_shape(logp, "logp", logp_old, "logp_old")
    check_tensor(mask, "mask", ndim=2)
    check_same_shape(logp, "logp", mask, "mask")
    if logp_ref is not None:
        check_tensor(logp_ref, "logp_ref", ndim=2)
        check_same_shape(logp, "logp", logp_ref, "logp_ref")
    check_tensor(advantages, "advantages", ndim=1)
    if advantages.shape[0] != logp.shape[0]:
        raise ValueError(
            f"advantages must have shape ({logp.shape[0]},) (one per rollout), "
            f"got {tuple(advantages.shape)}"
        )
    clip = check_number(clip, "clip", low=0.0)
    low = clip if clip_low is None else check_number(clip_low, "clip_low", low=0.0)
    high = clip if clip_high is None else check_number(clip_high, "clip_high", low=0.0)
    entropy_coef = check_number(entropy_coef, "entropy_coef", low=0.0)
    use_entropy = entropy is not None and entropy_coef != 0.0
    if is_weights is not None:
        check_tensor(is_weights, "is_weights", ndim=2)
        check_same_shape(logp, "logp", is_weights, "is_weights")
    if token_mask is not None:
        check_tensor(token_mask, "token_mask", ndim=2)
        check_same_shape(logp, "logp", token_mask, "token_mask")
        token_mask = as_bool_mask(token_mask, "token_mask")
    if use_entropy:
        check_tensor(entropy, "entropy", ndim=2)
        check_same_shape(logp, "logp", entropy, "entropy")
    kl_coef = check_number(kl_coef, "kl_coef", low=0.0)
    counts = {
        "num_tokens_global": _check_count(num_tokens_global, "num_tokens_global"),
        "num_seqs_global": _check_count(num_seqs_global, "num_seqs_global"),
        "norm_length": None,
    }
    if norm_length is not None:
        check_int(norm_length, "norm_length", low=1, rule="a positive int")
        counts["norm_length"] = norm_length
    mask = as_bool_mask(mask)

    dtype = compute_dtype(logp.dtype)
    lp = logp.to(dtype)  # (R, T)
    zero = lp.new_zeros(())
    # (R, T); zero outside the mask so that a NaN advantage of an excluded rollout cannot reach
    # the gradient through 0 * NaN.
    adv = torch.where(mask, advantages.detach().to(dtype)[:, None], zero)
    log_ratio = torch.where(mask, lp - logp_old.detach().to(dtype), zero)  # (R, T)
    if ratio_level == "sequence":  # GSPO-token: value log s on every token, d/dlogp_t = 1
        log_s = sequence_log_ratio(log_ratio, mask).detach()  # (R,)
        log_ratio = torch.where(mask, log_s[:, None] + lp - lp.detach(), zero)  # (R, T)
    ratio = log_ratio.exp()  # (R, T)
    # (R, T) pg term and where its clip is active; logp zeroed outside the mask (cispo reads it)
    pg_tok, clipped = surrogate(ratio, lp if loss_mode == "ppo" else torch.where(mask, lp, zero),
                                adv, low, high)
    if is_weights is not None:  # rollout correction: w * pg, w constant (core.correction)
        pg_tok = pg_tok * torch.where(mask, is_weights.detach().to(dtype), zero)
    if token_mask is not None:  # top-entropy masking: e * pg, e constant
        pg_tok = pg_tok * (token_mask & mask).to(dtype)

    use_kl = logp_ref is not None and kl_coef != 0.0
    if use_kl:
        delta = torch.where(mask, logp_ref.detach().to(dtype) - lp, zero)  # (R, T)
        kl_tok = estimate_kl(delta)  # (R, T), >= 0
        tok = pg_tok + kl_coef * kl_tok
    else:
        kl_tok = None
        tok = pg_tok
    ent_mask = mask if token_mask is None else mask & token_mask  # the bonus acts where pg does
    ent_tok = torch.where(ent_mask, entropy.to(dtype), zero) if use_entropy else None  # (R, T)
    if ent_tok is not None:
        tok = tok - entropy_coef * ent_tok
    loss = aggregate(tok, mask, **counts)

    with torch.no_grad():  # all metrics in one tensor -> one device sync
        r = ratio.detach()
        inf = torch.tensor(float("inf"), dtype=dtype, device=r.device)
        has_tokens = r.numel() > 0
        stats = torch.stack(
            [
                aggregate(pg_tok.detach(), mask, **counts),
                aggregate(kl_tok.detach(), mask, **counts) if use_kl else zero,
                (clipped & mask).sum().to(dtype),
                mask.sum().to(dtype),
                mask.any(dim=-1).sum().to(dtype),
                torch.where(mask, r, zero).sum(),
                torch.where(mask, r, inf).amin() if has_tokens else inf,
                torch.where(mask, r, -inf).amax() if has_tokens else -inf,
                aggregate(ent_tok.detach(), mask, **counts) if ent_tok is not None else zero,
                (token_mask & mask).sum().to(dtype) if token_mask is not None else zero,
            ]
        ).tolist()
    (pg_metric, kl_metric, n_clipped, n_tok, n_seq, ratio_sum, ratio_min, ratio_max, ent,
     n_kept) = stats
    if n_tok == 0:  # no loss token: neutral values, never NaN/inf
        ratio_min = ratio_max = 1.0
    metrics = {
        "pg_loss": pg_metric,
        "kl": kl_metric,
        "clip_fraction": n_clipped / n_tok if n_tok else 0.0,
        "ratio_mean": ratio_sum / n_tok if n_tok else 1.0,
        "ratio_min": ratio_min,
        "ratio_max": ratio_max,
        "num_tokens": n_tok,
        "num_seqs": n_seq,
        "entropy": ent,
    }
    if token_mask is not None:
        metrics["token_mask_tokens"] = n_kept
    return loss, metrics
