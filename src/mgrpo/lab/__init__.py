"""The embedded lab world: a tiny Llama trained from scratch on easy arithmetic, cached on disk.

`build_lab_model()` returns the path of a Hugging Face model directory (built on first use,
then reused from `~/.cache/mgrpo/lab/<hash>/`); `lab_task_problems(split, n, seed)` gives the
held-out hard task the demo recipe trains on with label-free RL; prompts are rendered with
`LAB_TEMPLATE`. See `mgrpo.lab.config` for the distributions and `mgrpo.lab.build` for the
build procedure.
"""

from mgrpo.lab.build import (
    build_lab_model,
    format_metrics,
    lab_info,
    lab_model_path,
    lab_task_problems,
)
from mgrpo.lab.cache import CorruptCacheError, lab_cache_root, verify_entry
from mgrpo.lab.config import (
    DEFAULT_LAB_CONFIG,
    LAB_ALPHABET,
    LAB_MODEL_NAME,
    LAB_TEMPLATE,
    QUICK_LAB_CONFIG,
    LabConfig,
    TaskSpec,
)

__all__ = [
    "DEFAULT_LAB_CONFIG",
    "LAB_ALPHABET",
    "LAB_MODEL_NAME",
    "LAB_TEMPLATE",
    "QUICK_LAB_CONFIG",
    "CorruptCacheError",
    "LabConfig",
    "TaskSpec",
    "build_lab_model",
    "format_metrics",
    "lab_cache_root",
    "lab_info",
    "lab_model_path",
    "lab_task_problems",
    "verify_entry",
]
