"""Fault injection for the reliability tests: `MGRPO_FAULT=<point>:<nth>[:<action>][,...]`.

A test starts `mgrpo train` with e.g. `MGRPO_FAULT=checkpoint_write:3:kill` and the process
SIGKILLs itself the 3rd time it reaches the named point. Points:

    generate          an embedding forward pass of a rollout model while an engine generates
                      (so `generate:5` lands in the middle of a generation)
    optimizer_step    just before `optimizer.step()` runs (gradients computed, weights unchanged)
    checkpoint_write  after each file stage of a checkpoint write (model, tokenizer, momentum,
                      optimizer, state, extra tensors, manifest) and before its rename
    metrics_write     before a metrics.jsonl line is written

Actions: `kill` (SIGKILL self, the default), `term` / `int` (send SIGTERM / SIGINT to self),
`enospc` / `eacces` (raise OSError "No space left on device" / "Permission denied").

Unset (the normal case) this costs one `is None` test per checkpoint/metrics write, and the
generation/optimizer hooks are not installed at all.
"""

from __future__ import annotations

import errno
import os
import signal
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # annotations only: checkpoint and metrics writes import this module light
    from torch import nn

    from mgrpo.rollout import RolloutEngine
    from mgrpo.train.types import StepModels

ENV = "MGRPO_FAULT"
POINTS = ("generate", "optimizer_step", "checkpoint_write", "metrics_write")
ACTIONS = ("kill", "term", "int", "enospc", "eacces")


def parse(spec: str | None) -> dict[str, tuple[int, str]] | None:
    """`"a:3:kill,b:1"` -> {"a": (3, "kill"), "b": (1, "kill")}; None for an empty spec."""
    if not spec:
        return None
    out: dict[str, tuple[int, str]] = {}
    for item in spec.split(","):
        parts = item.strip().split(":")
        if len(parts) not in (2, 3) or parts[0] not in POINTS or not parts[1].isdigit():
            raise ValueError(
                f"{ENV}={spec!r}: each item must be <point>:<nth>[:<action>] with point in "
                f"{list(POINTS)}, nth >= 1 and action in {list(ACTIONS)}"
            )
        action = parts[2] if len(parts) == 3 else "kill"
        if action not in ACTIONS or int(parts[1]) < 1:
            raise ValueError(f"{ENV}={spec!r}: bad nth or action in {item!r} (actions: {list(ACTIONS)})")
        out[parts[0]] = (int(parts[1]), action)
    return out


_PLAN = parse(os.environ.get(ENV))
_counts: dict[str, int] = {}


def active() -> bool:
    return _PLAN is not None


def hit(point: str, path: str | Path | None = None) -> None:
    """Count one visit of `point`; perform the planned action on the planned visit."""
    if _PLAN is None or point not in _PLAN:
        return
    _counts[point] = _counts.get(point, 0) + 1
    nth, action = _PLAN[point]
    if _counts[point] != nth:
        return
    if action == "kill":
        os.kill(os.getpid(), signal.SIGKILL)
    elif action in ("term", "int"):
        os.kill(os.getpid(), signal.SIGTERM if action == "term" else signal.SIGINT)
    else:
        code = errno.ENOSPC if action == "enospc" else errno.EACCES
        raise OSError(code, os.strerror(code), None if path is None else str(path))


def install(models: StepModels) -> None:
    """Hook `generate` and `optimizer_step` into a trainer's StepModels (only when active)."""
    if _PLAN is None:
        return
    generating = [False]

    def wrap(engine: RolloutEngine) -> None:
        for name in ("generate", "generate_joint"):
            real = getattr(engine, name, None)
            if real is not None:
                setattr(engine, name, flagged(real))

    def flagged(real: Callable[..., Any]) -> Callable[..., Any]:
        def call(*args: Any, **kwargs: Any) -> Any:
            generating[0] = True
            try:
                return real(*args, **kwargs)
            finally:
                generating[0] = False

        return call

    def on_embed(module: nn.Module, inputs: tuple[Any, ...]) -> None:
        if generating[0]:
            hit("generate")

    for engine, model in ((models.policy_engine, models.policy),
                          (models.momentum_engine, getattr(models.momentum, "generator", None))):
        if engine is not None and model is not None:
            wrap(engine)
            model.get_input_embeddings().register_forward_pre_hook(on_embed)
    models.optimizer.register_step_pre_hook(lambda opt, args, kwargs: hit("optimizer_step"))
