"""Prompt datasets, prompt templates and the benchmark registry.

`mgrpo.data.datasets.load_prompt_dataset` (files, vendored sets, hub ids),
`mgrpo.data.templates.render_prompt` (templates), `mgrpo.data.benchmarks` (evaluation sets).
"""

from mgrpo.data.datasets import DatasetError, PromptRecord, load_prompt_dataset
from mgrpo.data.templates import MATH_SUFFIX, TEMPLATES, render_prompt

__all__ = [
    "DatasetError",
    "PromptRecord",
    "load_prompt_dataset",
    "MATH_SUFFIX",
    "TEMPLATES",
    "render_prompt",
]
