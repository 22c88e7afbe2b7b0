"""Token and trajectory entropy of the sampling distribution (docs/design.md §3).

``token_entropy`` is the full-distribution Shannon entropy ``H = -sum_v p_v log p_v`` of
``p = softmax(logits / T)`` at the *sampling* temperature ``T``; ``trajectory_entropy`` is its
mean over the valid response tokens of each rollout (padding excluded, EOS included).

Departure from the paper: none in the formula. The temperature is the sampling temperature
(docs/design.md §3: the distribution the rollout came from), and we accumulate in fp32 even for bf16
logits so that entropies near ``log V`` keep their precision.

``top_entropy_mask`` is top-entropy token masking (Wang et al. 2025, "Beyond the 80/20 rule",
arXiv 2506.01939; TRL's ``top_entropy_quantile``, ``GRPOTrainer.get_high_entropy_mask``): with
``rho`` the share of tokens to keep and ``H_1..H_n`` the token entropies of the valid tokens of
a batch,

    tau  = quantile(H, 1 - rho)     (linear interpolation, as ``torch.quantile``)
    keep = valid & (H >= tau)

so about a ``rho`` share of the valid tokens (ties at ``tau`` all kept) carries gradient.
``rho = 1`` keeps every valid token; no valid token keeps none. The quantile is over the
batch's tokens pooled (not per sequence), as TRL's. ``top_entropy_threshold`` is ``tau`` of
a flat set of values (the trainer pools them over the micro-batches and ranks of an update
first); it sorts instead of calling ``torch.quantile``, which refuses inputs of more than
2^24 values.
"""

from __future__ import annotations

import torch

from mgrpo.core._checks import as_bool_mask, check_number, check_same_shape, check_tensor
from mgrpo.core.constants import compute_dtype

__all__ = ["token_entropy", "top_entropy_mask", "top_entropy_threshold", "trajectory_entropy"]


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


def top_entropy_threshold(values: torch.Tensor, share: float) -> float | None:
    """``tau = quantile(values, 1 - share)`` with linear interpolation (module docstring), or
    None for no values. ``values``: 1-D entropies of the valid tokens; ``share`` in (0, 1].

    With the values sorted ascending, ``v``, ``n`` of them and ``p = (1 - share) (n - 1)``:
    ``tau = v[floor p] + (p - floor p) (v[ceil p] - v[floor p])``, computed in fp64."""
    check_tensor(values, "values", ndim=1)
    share = check_number(share, "share", low=0.0, low_open=True, high=1.0)
    n = values.numel()
    if n == 0:
        return None
    v = torch.sort(values.detach().to(torch.float64)).values  # (n,)
    pos = (1.0 - share) * (n - 1)
    lo = int(pos)  # floor: pos >= 0
    hi = min(lo + 1, n - 1)
    low_value = float(v[lo])
    return low_value + (pos - lo) * (float(v[hi]) - low_value)


def top_entropy_mask(entropy: torch.Tensor, mask: torch.Tensor, share: float,
                     threshold: float | None = None) -> torch.Tensor:
    """``(R, T)`` bool: the valid tokens (``mask``) whose entropy is ``>= tau`` (module
    docstring). ``tau`` is ``threshold`` when given (pooled over more than this batch), else
    ``top_entropy_threshold`` of this batch's valid entropies. Values under ``mask == 0`` are
    not read; no valid token (or ``threshold`` None with no values) gives all False."""
    check_tensor(entropy, "entropy", ndim=2)
    check_tensor(mask, "mask", ndim=2)
    check_same_shape(entropy, "entropy", mask, "mask")
    mask = as_bool_mask(mask)
    tau = top_entropy_threshold(entropy[mask], share) if threshold is None else threshold
    if tau is None:
        return torch.zeros_like(mask)
    return mask & (entropy.to(torch.float64) >= tau)
