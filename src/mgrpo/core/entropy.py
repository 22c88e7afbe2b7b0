"""Token and trajectory entropy of the sampling distribution (docs/design.md §3).

``token_entropy`` is the full-distribution Shannon entropy ``H = -sum_v p_v log p_v`` of
``p = softmax(logits / T)`` at the *sampling* temperature ``T``; ``trajectory_entropy`` is its
mean over the valid response tokens of each rollout (padding excluded, EOS included).

Departure from the paper: none in the formula. The temperature is the sampling temperature
(docs/design.md §3: the distribution the rollout came from), and we accumulate in fp32 even for bf16
logits so that entropies near ``log V`` keep their precision.
"""

from __future__ import annotations

import torch

from mgrpo.core._checks import as_bool_mask, check_number, check_same_shape, check_tensor
from mgrpo.core.constants import compute_dtype

__all__ = ["token_entropy", "trajectory_entropy"]


def token_entropy(logits: torch.Tensor, temperature: float = 1.0) -> torch.Tensor:
    """Entropy of ``softmax(logits / temperature)`` over the last dimension.

    ``H = logsumexp(z) - sum_v p_v z_v`` with ``z = logits / T`` and ``p = softmax(z)``, computed
    from ``log_softmax`` (no overflow for large logits). Vocabulary entries with logit ``-inf``
    (masked tokens) have ``p = 0`` and contribute 0, not NaN.

    Args:
        logits: ``(..., V)`` float tensor (bf16/fp16 are upcast to fp32; fp64 stays fp64).
        temperature: sampling temperature ``T > 0``.

    Returns:
        ``(...)`` fp32 (fp64 for fp64 input) tensor of entropies in nats, in ``[0, log V]``.

    Raises:
        ValueError: ``temperature`` is not a finite number > 0, or ``logits`` is not a floating
            tensor with at least one dimension.
    """
    check_tensor(logits, "logits")
    temperature = check_number(temperature, "temperature", low=0.0, low_open=True)
    if not logits.is_floating_point():
        raise ValueError(f"logits must be a floating tensor, got dtype {logits.dtype}")
    if logits.dim() == 0:
        raise ValueError("logits must have a vocabulary dimension, got a 0-dim tensor")
    z = logits.to(compute_dtype(logits.dtype))  # (..., V) fp32 / fp64
    if temperature != 1.0:
        z = z / temperature
    logp = torch.log_softmax(z, dim=-1)  # (..., V)
    p = logp.exp()
    # Masked (-inf) entries have p = 0 and contribute 0 by definition; replacing their logp by 0
    # (rather than masking p * logp) also keeps the gradient free of 0 * inf = NaN.
    logp = torch.where(p > 0, logp, logp.new_zeros(()))
    return -(p * logp).sum(dim=-1)  # (...)


def trajectory_entropy(token_entropy: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Masked mean of token entropies per rollout: ``(R, T), (R, T) -> (R,)``.

    ``H_traj[r] = sum_t mask[r, t] * H[r, t] / sum_t mask[r, t]``. Values under ``mask == 0``
    are ignored entirely (NaN/inf padding does not leak).

    Args:
        token_entropy: ``(R, T)`` float tensor (from :func:`token_entropy` or a rollout batch).
        mask: ``(R, T)`` bool (or 0/1) tensor, True on response tokens incl. the EOS token.

    Returns:
        ``(R,)`` tensor in fp32 (fp64 for fp64 input).

    Raises:
        ValueError: shapes differ or are not 2-D, or some rollout has no valid token (its
            entropy is undefined; this is a bug upstream, e.g. an empty response not masked in).
    """
    check_tensor(token_entropy, "token_entropy", ndim=2)
    check_tensor(mask, "mask", ndim=2)
    check_same_shape(token_entropy, "token_entropy", mask, "mask")
    mask = as_bool_mask(mask)
    counts = mask.sum(dim=-1)  # (R,)
    empty = (counts == 0).nonzero().flatten()
    if empty.numel():
        shown = empty[:10].tolist()
        raise ValueError(
            f"trajectory_entropy: {empty.numel()} rollout(s) have no valid token in mask "
            f"(row indices {shown}{'...' if empty.numel() > 10 else ''})"
        )
    h = token_entropy.to(compute_dtype(token_entropy.dtype))
    h = torch.where(mask, h, torch.zeros((), dtype=h.dtype, device=h.device))  # (R, T)
    return h.sum(dim=-1) / counts.to(h.dtype)  # (R,)
