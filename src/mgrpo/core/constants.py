"""Numeric conventions of the M-GRPO core, in one place (docs/design.md §4).

Every default that the algorithm semantics (docs/design.md §3) pin down lives here so that
the functions, their docstrings and the tests all read the same number.
"""

from __future__ import annotations

import torch

# --- advantages -------------------------------------------------------------------------------
#: Added to the group standard deviation before dividing: ``A = (r - mean) / (std + ADV_EPS)``.
ADV_EPS: float = 1e-6
#: Degrees of freedom removed by the group standard deviation (Bessel correction).
STD_DDOF: int = 1
#: A group needs at least this many rollouts in the loss set to get a non-zero advantage.
MIN_GROUP_SIZE: int = 2

# --- IQR entropy filter -----------------------------------------------------------------------
#: Default IQR multiplier ``k`` in ``keep = H >= q1 - k * (q3 - q1)``.
DEFAULT_IQR_K: float = 0.75
#: Lower and upper quartile levels.
IQR_QUANTILES: tuple[float, float] = (0.25, 0.75)
#: ``torch.quantile`` interpolation used for the quartiles.
QUANTILE_INTERPOLATION: str = "linear"

# --- policy loss ------------------------------------------------------------------------------
#: PPO clip range epsilon: ratio is clipped to ``[1 - clip, 1 + clip]``.
DEFAULT_CLIP: float = 0.2
#: Coefficient beta of the k3 KL penalty to the frozen reference model.
DEFAULT_KL_COEF: float = 0.005
#: Default loss aggregation (verl's default).
DEFAULT_LOSS_AGG: str = "token-mean"

# --- momentum model ---------------------------------------------------------------------------
#: Default EMA momentum ``m`` in ``theta_k <- m * theta_k + (1 - m) * theta_q``.
DEFAULT_EMA_MOMENTUM: float = 0.99

# --- label-free rewards ----------------------------------------------------------------------
#: Floor of an embedding's L2 norm before the cosine similarity of EVOL-RL's novelty
#: (``np.maximum(norms, 1e-8)`` in YujunZhou/EVOL-RL ``semantic_novelty.py``).
EMBED_NORM_EPS: float = 1e-8
#: EVOL-RL's novelties are rounded to this many decimals before the min-max rescaling, so
#: novelties equal in exact arithmetic (identical embeddings) tie whatever the summation order.
NOVELTY_DECIMALS: int = 12

# --- precision --------------------------------------------------------------------------------
#: Floating dtypes narrower than fp32 are upcast to this dtype before any reduction.
ACCUMULATE_DTYPE: torch.dtype = torch.float32


def compute_dtype(dtype: torch.dtype) -> torch.dtype:
    """dtype to accumulate in: fp64 stays fp64, everything else (bf16, fp16, fp32, ints) -> fp32."""
    return torch.float64 if dtype == torch.float64 else ACCUMULATE_DTYPE
