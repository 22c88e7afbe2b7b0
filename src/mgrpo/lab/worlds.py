"""Named lab worlds: `mgrpo lab build --world NAME`, `model.name: lab:NAME`.

A world is a `LabConfig` under a name. `default` is the demo's world (`model.name: lab`,
the same config and cache hash as `DEFAULT_LAB_CONFIG`); the others are the candidates
of the lab study's search for a world with a large vote gap (docs/lab-study.md, "Lab
worlds"), each measured at the RL setting (16 samples at T = 1.1 on 128 held-out val
problems). Every world keeps the default RL task (4 operands in 0..9, ops +-), so the lab
data sources (`data.train: lab`, `validation.data: lab`) serve all of them.
"""

from __future__ import annotations

from dataclasses import dataclass

from mgrpo.lab.config import DEFAULT_LAB_CONFIG, LAB_MODEL_NAME, LabConfig, TaskSpec

WORLD_SEPARATOR = ":"  # model.name lab:NAME
DEFAULT_WORLD = "default"
# the RL setting every candidate world is measured at when built
RL_MEASURE = dict(measure_samples=16, measure_temperature=1.1)


@dataclass(frozen=True)
class LabWorld:
    """A named lab world: its config and one line on what it changes from `default`."""

    name: str
    config: LabConfig
    summary: str


def _mix(four_share: float) -> tuple[tuple[float, TaskSpec], ...]:
    """The default SFT mixture with `four_share` of 4-operand problems."""
    return ((1.0 - four_share, TaskSpec(min_operands=2, max_operands=3, max_value=9)),
            (four_share, TaskSpec(min_operands=4, max_operands=4, max_value=9)))


_BASE = DEFAULT_LAB_CONFIG.replace(**RL_MEASURE)

WORLDS: dict[str, LabWorld] = {
    w.name: w
    for w in (
        LabWorld(DEFAULT_WORLD, DEFAULT_LAB_CONFIG, "the demo's world (model.name: lab)"),
        LabWorld("noise30", _BASE.replace(answer_noise=0.3),
                 "30% of SFT solutions carry one slip of 1-2"),
        LabWorld("noise30-4op50", _BASE.replace(answer_noise=0.3, sft_mix=_mix(0.5)),
                 "30% slips; 50% 4-operand SFT share"),
        LabWorld("noise30-4op75", _BASE.replace(answer_noise=0.3, sft_mix=_mix(0.75)),
                 "30% slips; 75% 4-operand SFT share"),
    )
}


def lab_world(name: str) -> LabWorld:
    """The world called `name`; ValueError listing the known names otherwise."""
    try:
        return WORLDS[name]
    except KeyError:
        raise ValueError(f"unknown lab world {name!r}; known: {', '.join(WORLDS)}") from None


def world_of_model_name(model_name: str) -> LabWorld | None:
    """The world a `model.name` names: `lab` -> default, `lab:NAME` -> NAME, else None.

    Raises ValueError for `lab:` with an unknown or empty NAME.
    """
    if model_name == LAB_MODEL_NAME:
        return WORLDS[DEFAULT_WORLD]
    prefix = LAB_MODEL_NAME + WORLD_SEPARATOR
    if not model_name.startswith(prefix):
        return None
    return lab_world(model_name[len(prefix):])
