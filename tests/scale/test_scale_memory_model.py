"""benchmarks/memory_model.py: parameter counts, KV sizes, and docs/memory.md's table is
exactly what the script prints (produced, not typed)."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pytest
import torch

from mgrpo.rollout.memory import kv_shape

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def mm():
    spec = importlib.util.spec_from_file_location("memory_model", ROOT / "benchmarks/memory_model.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules["memory_model"] = module
    spec.loader.exec_module(module)
    return module


def test_parameter_counts_and_kv_sizes_of_the_qwen3_configs(mm) -> None:
    counts = {k: round(m.params / 1e6) for k, m in mm.QWEN3.items()}
    assert counts == {"qwen3-0.6b": 596, "qwen3-4b": 4022, "qwen3-8b": 8191}
    kib = {k: m.kv(2).kv_bytes_per_token // 1024 for k, m in mm.QWEN3.items()}
    assert kib == {"qwen3-0.6b": 112, "qwen3-4b": 144, "qwen3-8b": 144}


def test_the_model_matches_a_real_models_parameter_count(mm) -> None:
    """The closed-form count equals a real (random, small) Qwen3 of the same shape."""
    import dataclasses

    from transformers import Qwen3Config, Qwen3ForCausalLM

    for tied in (True, False):
        shape = dataclasses.replace(mm.QWEN3["qwen3-4b"], hidden=64, layers=2, heads=4,
                                    kv_heads=2, head_dim=16, intermediate=96, vocab=300,
                                    tied=tied)
        cfg = Qwen3Config(vocab_size=300, hidden_size=64, intermediate_size=96,
                          num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2,
                          head_dim=16, tie_word_embeddings=tied)
        model = Qwen3ForCausalLM(cfg)
        assert sum(p.numel() for p in model.parameters()) == shape.params
        assert shape.kv(4) == kv_shape(cfg, torch.float32)


def test_every_stage_total_is_the_sum_of_its_terms_and_includes_the_static_state(mm) -> None:
    report = mm.model_report("paper", 8)
    for m in report["models"].values():
        static = m["stages"]["static"]["total"]
        for name, stage in m["stages"].items():
            assert stage["total"] == sum(stage["terms"].values())
            if name not in ("startup", "static") and not name.startswith("eval"):
                assert stage["total"] > static
    rollout = report["models"]["qwen3-4b"]["stages"]["rollout"]["terms"]
    assert rollout["KV cache"] == 32 * 147456 * (512 + 3072)  # 1 prompt x 32 rows per GPU


def test_docs_table_is_the_scripts_output(mm, tmp_path) -> None:
    doc = (ROOT / "docs/memory.md").read_text()
    copy = tmp_path / "memory.md"
    copy.write_text(doc)
    mm.main(["--world", "8", "--json-only", "--write", str(copy)])
    assert copy.read_text() == doc, "regenerate: python benchmarks/memory_model.py --write docs/memory.md"
