"""How far the policy and the momentum model moved from the initial weights.

For a run's final checkpoint (``checkpoints/step-<last>/``: ``model.safetensors`` = the policy
θ_p, ``momentum.safetensors`` = the EMA master θ_m) and the initial weights θ_0:

    policy_drift   = ||θ_p - θ_0||      momentum_drift = ||θ_m - θ_0||
    ratio          = momentum_drift / policy_drift
    gap            = ||θ_p - θ_m||

where ||.|| is the L2 norm over every floating-point tensor present in all three files (the
concatenation of the flattened tensors). An EMA with coefficient m that tracked a policy moving
at a constant rate for T updates sits about m / (1 - m) updates behind it; the ratio says how
much of the policy's path the momentum model has followed (1 = all of it, 0 = none).

The initial weights are the model directory of ``model.name`` when it is a local directory, the
lab model when it is ``lab`` (:func:`mgrpo.lab.lab_model_path`); otherwise the drift is unknown.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

from mgrpo.train.run.run_dir import CHECKPOINTS_DIR, HF_WEIGHTS_FILE, MOMENTUM_FILE, STEP_DIR


def initial_weights(flat_config: dict[str, Any]) -> Path | None:
    """The initial ``model.safetensors`` of a run, or None when it cannot be located."""
    name = flat_config.get("model.name")
    if not isinstance(name, str):
        return None
    if name == "lab" or name.startswith("lab:"):
        # lazy, start-up: mgrpo.lab imports torch; only a lab run's drift needs it
        from mgrpo.lab import lab_model_path
        from mgrpo.lab.worlds import world_of_model_name

        try:
            world = world_of_model_name(name)
        except ValueError:  # `lab:` with a world this version does not know
            return None
        path = lab_model_path(world.config) / HF_WEIGHTS_FILE
    else:
        path = Path(name) / HF_WEIGHTS_FILE
    return path if path.is_file() else None


def final_checkpoint(run_dir: Path) -> Path | None:
    """The checkpoint directory with the highest step, or None."""
    ckpts = [p for p in (run_dir / CHECKPOINTS_DIR).glob("step-*") if STEP_DIR.match(p.name)]
    return max(ckpts, key=lambda p: int(p.name[5:])) if ckpts else None


def weight_drift(checkpoint: Path, initial: Path) -> dict[str, float] | None:
    """Drift norms of one checkpoint (module docstring); None without a momentum file."""
    from safetensors.torch import load_file

    if not (checkpoint / MOMENTUM_FILE).is_file():
        return None
    policy = load_file(checkpoint / HF_WEIGHTS_FILE)
    momentum = load_file(checkpoint / MOMENTUM_FILE)
    start = load_file(initial)
    sums = {"policy": 0.0, "momentum": 0.0, "gap": 0.0}
    for key, p in policy.items():
        if key not in momentum or key not in start or not p.is_floating_point():
            continue
        p, m, s = p.double(), momentum[key].double(), start[key].double()
        if p.shape != s.shape or m.shape != s.shape:
            continue
        sums["policy"] += float(((p - s) ** 2).sum())
        sums["momentum"] += float(((m - s) ** 2).sum())
        sums["gap"] += float(((p - m) ** 2).sum())
    policy_drift = math.sqrt(sums["policy"])
    momentum_drift = math.sqrt(sums["momentum"])
    return {
        "policy_drift": policy_drift,
        "momentum_drift": momentum_drift,
        "ratio": momentum_drift / policy_drift if policy_drift > 0 else math.nan,
        "gap": math.sqrt(sums["gap"]),
    }


def run_drift(run_dir: Path, flat_config: dict[str, Any]) -> dict[str, float] | None:
    """:func:`weight_drift` of a run's final checkpoint; None when any piece is missing."""
    ckpt = final_checkpoint(run_dir)
    initial = initial_weights(flat_config)
    if ckpt is None or initial is None:
        return None
    return weight_drift(ckpt, initial)
