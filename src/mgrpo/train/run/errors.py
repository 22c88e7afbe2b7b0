"""The error a training run stops with when it cannot continue."""

from __future__ import annotations


class TrainingError(RuntimeError):
    """The run cannot continue (bad resume, repeated NaN losses, ...); message says why."""
