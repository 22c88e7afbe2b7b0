"""iqr_keep_mask: quartile rule vs a loop reference, docs/design.md §5 properties, errors."""

from __future__ import annotations

import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from mgrpo.core.constants import DEFAULT_IQR_K
from mgrpo.core.filtering import iqr_bounds, iqr_keep_mask

FAST = settings(deadline=None, max_examples=50, derandomize=True)

entropy_rows = st.lists(
    st.lists(st.floats(0.0, 10.0, allow_nan=False), min_size=1, max_size=12),
    min_size=1,
    max_size=4,
).map(lambda rows: [r[: min(len(x) for x in rows)] for r in rows])  # rectangular (B, G)


def _quantile_ref(values: list[float], level: float) -> float:
    """Linear-interpolation quantile (numpy/torch 'linear'), written out."""
    xs = sorted(values)
    pos = level * (len(xs) - 1)
    lo = math.floor(pos)
    hi = min(lo + 1, len(xs) - 1)
    return xs[lo] + (xs[hi] - xs[lo]) * (pos - lo)


@FAST
@given(rows=entropy_rows, k=st.floats(0.0, 3.0))
def test_matches_loop_reference(rows: list[list[float]], k: float) -> None:
    h = torch.tensor(rows, dtype=torch.float64)  # (B, G)
    keep = iqr_keep_mask(h, k)
    assert keep.shape == h.shape and keep.dtype == torch.bool
    for b, row in enumerate(rows):
        q1, q3 = _quantile_ref(row, 0.25), _quantile_ref(row, 0.75)
        threshold = q1 - k * (q3 - q1)
        for g, value in enumerate(row):
            if abs(value - threshold) > 1e-9:  # rounding may differ exactly at the threshold
                assert bool(keep[b, g]) == (value >= threshold), (row, k, g)


@FAST
@given(rows=entropy_rows, k=st.floats(0.0, 3.0))
def test_keeps_every_point_between_the_quartiles(rows: list[list[float]], k: float) -> None:
    h = torch.tensor(rows, dtype=torch.float32)
    keep = iqr_keep_mask(h, k)
    q1, q3 = iqr_bounds(h)
    inside = (h >= q1[:, None]) & (h <= q3[:, None])
    assert bool(keep[inside].all())
    assert bool((keep.sum(dim=1) >= (h.shape[1] + 1) // 2).all())  # at least half of each row


@FAST
@given(rows=entropy_rows, k=st.floats(0.0, 3.0), seed=st.integers(0, 2**31 - 1))
def test_permutation_equivariant(rows: list[list[float]], k: float, seed: int) -> None:
    h = torch.tensor(rows, dtype=torch.float32)
    perm = torch.randperm(h.shape[1], generator=torch.Generator().manual_seed(seed))
    assert torch.equal(iqr_keep_mask(h[:, perm], k), iqr_keep_mask(h, k)[:, perm])


@FAST
@given(rows=entropy_rows, k1=st.floats(0.0, 3.0), k2=st.floats(0.0, 3.0))
def test_larger_k_keeps_a_superset(rows: list[list[float]], k1: float, k2: float) -> None:
    h = torch.tensor(rows, dtype=torch.float64)
    small, large = sorted((k1, k2))
    assert bool((iqr_keep_mask(h, small) <= iqr_keep_mask(h, large)).all())


def test_handcrafted_row_drops_only_the_low_tail() -> None:
    h = torch.tensor([[0.1, 1.0, 1.1, 1.2, 1.3, 5.0]], dtype=torch.float64)
    # q1 = 1.025, q3 = 1.275, IQR = 0.25, threshold = 1.025 - 0.75 * 0.25 = 0.8375
    expected = torch.tensor([[False, True, True, True, True, True]])
    assert torch.equal(iqr_keep_mask(h), expected)
    assert DEFAULT_IQR_K == 0.75
    # k = 0 keeps exactly H >= q1; a huge high outlier is never dropped
    assert torch.equal(
        iqr_keep_mask(h, 0.0), torch.tensor([[False, False, True, True, True, True]])
    )


def test_k_none_keeps_all_and_degenerate_rows() -> None:
    h = torch.tensor([[3.0, 0.0, 0.0, 0.0], [1.0, 1.0, 1.0, 1.0]])
    assert bool(iqr_keep_mask(h, None).all())
    assert bool(iqr_keep_mask(torch.tensor([[0.3]])).all())  # G = 1
    assert bool(iqr_keep_mask(h)[1].all())  # constant row
    assert iqr_keep_mask(torch.zeros(0, 5)).shape == (0, 5)


@pytest.mark.parametrize("k", [0.75, None])
@pytest.mark.parametrize("bad", [float("nan"), float("inf"), float("-inf")])
def test_non_finite_entropy_raises(k: float | None, bad: float) -> None:
    h = torch.tensor([[0.1, bad, 0.3]])
    with pytest.raises(ValueError, match="NaN/inf"):
        iqr_keep_mask(h, k)


@pytest.mark.parametrize("bad_k", [-0.1, float("nan"), float("inf")])
def test_bad_k_raises(bad_k: float) -> None:
    with pytest.raises(ValueError, match="k must"):
        iqr_keep_mask(torch.ones(2, 3), bad_k)


def test_bad_shapes_and_dtypes_raise() -> None:
    with pytest.raises(ValueError, match="2 dims"):
        iqr_keep_mask(torch.ones(3))
    with pytest.raises(ValueError, match="floating"):
        iqr_keep_mask(torch.ones(2, 3, dtype=torch.long))
