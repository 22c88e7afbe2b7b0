"""Tensor argument checks for ``mgrpo.core`` (private); numbers go through :mod:`mgrpo.checks`."""

from __future__ import annotations

import torch

from mgrpo.checks import check_int, check_number

__all__ = ["as_bool_mask", "check_int", "check_number", "check_same_shape", "check_tensor"]


def as_bool_mask(mask: torch.Tensor, name: str = "mask") -> torch.Tensor:
    """Return ``mask`` as a bool tensor; accepts bool or numeric tensors holding only 0 and 1."""
    if not isinstance(mask, torch.Tensor):
        raise ValueError(f"{name} must be a torch.Tensor, got {type(mask).__name__}")
    if mask.dtype == torch.bool:
        return mask
    if mask.is_floating_point() or mask.dtype in (
        torch.int8,
        torch.uint8,
        torch.int16,
        torch.int32,
        torch.int64,
    ):
        if mask.numel() and not bool(((mask == 0) | (mask == 1)).all()):
            raise ValueError(f"{name} must be boolean or hold only 0/1 values")
        return mask != 0
    raise ValueError(f"{name} must be a bool or 0/1 tensor, got dtype {mask.dtype}")


def check_tensor(x: object, name: str, ndim: int | None = None) -> torch.Tensor:
    """Check that ``x`` is a tensor (of ``ndim`` dims when given) and return it."""
    if not isinstance(x, torch.Tensor):
        raise ValueError(f"{name} must be a torch.Tensor, got {type(x).__name__}")
    if ndim is not None and x.dim() != ndim:
        raise ValueError(f"{name} must have {ndim} dims, got shape {tuple(x.shape)}")
    return x


def check_same_shape(a: torch.Tensor, a_name: str, b: torch.Tensor, b_name: str) -> None:
    if a.shape != b.shape:
        raise ValueError(
            f"{a_name} and {b_name} must have the same shape, "
            f"got {tuple(a.shape)} and {tuple(b.shape)}"
        )
