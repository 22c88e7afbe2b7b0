"""Rollout correction: truncated importance sampling between the rollout engine and the trainer.

The rollout engine (vLLM in bf16 with its own kernels) samples token y_t from its own
distribution pi_sampler, while the loss treats the rollouts as samples of the trainer's
pi_old (the same weights, the trainer's forward). The gap biases the policy gradient; TRL
(`vllm_importance_sampling_correction`) and verl (`rollout_correction`, "When Speed Kills
Stability", Liu, Li et al. 2025) reweight each token's policy-gradient term by a truncated
importance weight, computed with no gradient. With
`d_t = logp_old_t - logp_sampler_t` (0 on padding):

    token:     w_t = min(exp(clamp(d_t, -B, B)), C)
    sequence:  w   = min(exp(clamp(sum_t m_t d_t, -B, B)), C)    (one weight per rollout, every token)

C = the cap (`algorithm.rollout_correction_cap`, verl's default 2), B = SAFETY_BOUND = 20 on
the log scale so exp never overflows (verl's bound). Truncating at C keeps the variance
bounded (the weight is biased down for tokens the trainer likes far more than the sampler).
Token-level weights have low variance and some bias; the sequence level is unbiased before
truncation and has high variance for long responses. Departure: none from verl's `token` /
`sequence` TIS (its batch normalisation and rejection-sampling options are not offered).
"""

from __future__ import annotations

import torch

from mgrpo.core._checks import check_same_shape, check_tensor

SAFETY_BOUND = 20.0  # |log weight| clamp before exp (verl's SAFETY_BOUND)
LEVELS = ("token", "sequence")


def rollout_correction_weights(logp_old: torch.Tensor, logp_sampler: torch.Tensor,
                               mask: torch.Tensor, level: str, cap: float) -> torch.Tensor:
    """(R, T) truncated importance weights w (formulas: module docstring), detached; 0 on
    padding (mask 0). `logp_old` / `logp_sampler`: (R, T) log-probs of the sampled tokens under
    the trainer and under the rollout engine; `level`: token | sequence; `cap` >= 1.

    A rollout with no loss token gets weight 0 everywhere (it is masked out anyway)."""
    if level not in LEVELS:
        raise ValueError(f"unknown rollout correction level {level!r}; valid: {', '.join(LEVELS)}")
    if not cap >= 1.0:
        raise ValueError(f"the rollout correction cap must be >= 1, got {cap!r}")
    check_tensor(logp_old, "logp_old", ndim=2)
    check_same_shape(logp_old, "logp_old", logp_sampler, "logp_sampler")
    check_same_shape(logp_old, "logp_old", mask, "mask")
    m = mask.bool()
    with torch.no_grad():
        d = torch.where(m, logp_old.detach().double() - logp_sampler.detach().double(), 0.0)
        if level == "sequence":
            d = d.sum(dim=1, keepdim=True).expand_as(d)  # (R, T): the rollout's sum, each token
        w = d.clamp(-SAFETY_BOUND, SAFETY_BOUND).exp().clamp(max=cap)
        return torch.where(m, w, 0.0).to(logp_old.dtype)
