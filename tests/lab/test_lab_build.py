"""Lab world: a reduced config builds, caches, reuses fast, detects corruption, is deterministic."""

from __future__ import annotations

import json
import time
from collections import Counter

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mgrpo.lab import (
    LAB_MODEL_NAME,
    LAB_TEMPLATE,
    QUICK_LAB_CONFIG,
    CorruptCacheError,
    build_lab_model,
    lab_info,
    lab_task_problems,
    verify_entry,
)
from mgrpo.lab.cache import MANIFEST_NAME, lab_cache_root, sha256_file
from mgrpo.lab.measure import extract_boxed_int, majority_answer

REUSE_LIMIT_S = 5.0  # the contract: a second build call returns from cache in under 5 s


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    root = tmp_path_factory.mktemp("labcache")
    path = build_lab_model(QUICK_LAB_CONFIG, cache_dir=root, progress=False)
    return root, path, sha256_file(path / "model.safetensors")


def test_build_writes_hf_dir_with_manifest(built):
    root, path, _ = built
    assert path == root / QUICK_LAB_CONFIG.config_hash()
    for name in ("config.json", "model.safetensors", "tokenizer.json", MANIFEST_NAME):
        assert (path / name).is_file(), name
    manifest = json.loads((path / MANIFEST_NAME).read_text())
    assert manifest["config_hash"] == QUICK_LAB_CONFIG.config_hash()
    assert set(manifest["files"]) >= {"config.json", "model.safetensors", "tokenizer.json"}
    metrics = manifest["metrics"]
    assert metrics["n_problems"] == QUICK_LAB_CONFIG.measure_problems
    assert 0.0 <= metrics["sample_accuracy"] <= 1.0 and 0.0 <= metrics["maj_accuracy"] <= 1.0
    assert manifest["sft"]["sft_examples"] == QUICK_LAB_CONFIG.sft_steps * QUICK_LAB_CONFIG.batch_size
    # what a build depends on beyond its config: a different CPU kernel path may train another model
    import torch
    assert manifest["versions"]["cpu_capability"] == torch.backends.cpu.get_cpu_capability()
    assert {"torch", "transformers", "machine"} <= set(manifest["versions"])
    assert not [p for p in root.iterdir() if p.name.startswith(".")]  # no temp dirs left
    assert lab_info(QUICK_LAB_CONFIG, root)["config_hash"] == QUICK_LAB_CONFIG.config_hash()


def test_saved_dir_loads_with_transformers(built):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    _, path, _ = built
    tok = AutoTokenizer.from_pretrained(path)
    model = AutoModelForCausalLM.from_pretrained(path)
    prompt = LAB_TEMPLATE.replace("{question}", "3+4-2")
    assert tok.decode(tok.encode(prompt, add_special_tokens=False)) == prompt
    assert model.config.vocab_size == len(tok) and model.config.eos_token_id == tok.eos_token_id


def test_second_call_reuses_cache_fast(built):
    root, path, digest = built
    mtime = (path / "model.safetensors").stat().st_mtime_ns
    start = time.perf_counter()
    again = build_lab_model(QUICK_LAB_CONFIG, cache_dir=root, progress=False)
    assert time.perf_counter() - start < REUSE_LIMIT_S
    assert again == path
    assert (path / "model.safetensors").stat().st_mtime_ns == mtime  # not rebuilt
    assert sha256_file(path / "model.safetensors") == digest


def test_corrupt_entry_is_detected_and_rebuilt_identically(built, capsys):
    root, path, digest = built
    weights = path / "model.safetensors"
    data = bytearray(weights.read_bytes())
    data[len(data) // 2] ^= 0xFF  # flip one byte in the middle of the tensors
    weights.write_bytes(bytes(data))
    with pytest.raises(CorruptCacheError, match="model.safetensors"):
        verify_entry(path, QUICK_LAB_CONFIG.config_hash())
    rebuilt = build_lab_model(QUICK_LAB_CONFIG, cache_dir=root, progress=False)
    assert "corrupt" in capsys.readouterr().err
    verify_entry(rebuilt, QUICK_LAB_CONFIG.config_hash())
    # same seed, same config -> bit-identical weights (determinism)
    assert sha256_file(rebuilt / "model.safetensors") == digest


def test_missing_file_and_bad_manifest_are_corrupt(built):
    root, path, _ = built
    (path / "tokenizer.json").unlink()
    with pytest.raises(CorruptCacheError, match="tokenizer.json"):
        verify_entry(path, QUICK_LAB_CONFIG.config_hash())
    (path / MANIFEST_NAME).write_text("{not json")
    with pytest.raises(CorruptCacheError, match="unreadable"):
        verify_entry(path, QUICK_LAB_CONFIG.config_hash())
    build_lab_model(QUICK_LAB_CONFIG, cache_dir=root, progress=False)
    verify_entry(path, QUICK_LAB_CONFIG.config_hash())


def test_other_seed_gives_other_weights(built, tmp_path):
    _, _, digest = built
    other = QUICK_LAB_CONFIG.replace(seed=1, measure_problems=0)
    path = build_lab_model(other, cache_dir=tmp_path, progress=False)
    assert path.name == other.config_hash() != QUICK_LAB_CONFIG.config_hash()
    assert sha256_file(path / "model.safetensors") != digest
    assert json.loads((path / MANIFEST_NAME).read_text())["metrics"] == {}


def test_cache_root_env_override(monkeypatch, tmp_path):
    monkeypatch.setenv("MGRPO_CACHE_DIR", str(tmp_path / "c"))
    assert lab_cache_root() == tmp_path / "c" / "lab"
    assert lab_cache_root(tmp_path / "x") == tmp_path / "x"


def test_cli_build_and_info_reuse_cache(built, capsys):
    from mgrpo.cli import main

    root, path, _ = built
    assert main(["lab", "build", "--quick", "--cache-dir", str(root), "--no-progress"]) == 0
    out = capsys.readouterr().out
    assert str(path) in out and "sample accuracy" in out
    assert main(["lab", "info", "--quick", "--cache-dir", str(root)]) == 0
    out = capsys.readouterr().out
    assert "valid" in out and QUICK_LAB_CONFIG.config_hash() in out
    sha = json.loads((path / MANIFEST_NAME).read_text())["files"]["model.safetensors"]
    assert f"model.safetensors sha256 {sha[:16]}" in out and "cpu_capability" in out


def test_task_splits_are_disjoint_seeded_and_held_out_of_sft():
    from mgrpo.lab.build import in_rl_pool, sft_problems

    train = lab_task_problems("train", 300, seed=0)
    val = lab_task_problems("val", 100, seed=0)
    assert train == lab_task_problems("train", 300, seed=0)
    assert {r.question for r in train}.isdisjoint({r.question for r in val})
    assert len({r.question for r in train}) == 300
    for r in train + val:
        assert str(eval(r.question)) == r.answer  # noqa: S307 - test-only, generated text
        assert in_rl_pool(r.question, QUICK_LAB_CONFIG)
    sft = sft_problems(QUICK_LAB_CONFIG, 2000)
    assert not any(in_rl_pool(r.question, QUICK_LAB_CONFIG) for r in sft)
    assert {r.question for r in sft}.isdisjoint({r.question for r in train + val})
    with pytest.raises(ValueError, match="split"):
        lab_task_problems("test", 3)


def test_measure_helpers():
    assert extract_boxed_int("1+2=3.\\boxed{3}") == 3
    assert extract_boxed_int("\\boxed{1} then \\boxed{-12}") == -12
    assert extract_boxed_int("\\boxed{x}") is None and extract_boxed_int("") is None
    assert majority_answer([None, 2, 3, 3, 2]) == 2  # tie -> first seen
    assert majority_answer([None, None]) is None
    assert LAB_MODEL_NAME == "lab"


@settings(deadline=None, max_examples=200, derandomize=True)
@given(st.lists(st.one_of(st.none(), st.integers(-3, 3)), max_size=12))
def test_majority_answer_is_plurality_with_first_seen_ties(answers):
    present = [a for a in answers if a is not None]
    if not present:
        assert majority_answer(answers) is None
        return
    counts = Counter(present)  # insertion-ordered: most_common keeps the first seen on ties
    assert majority_answer(answers) == counts.most_common(1)[0][0]


def test_entry_built_elsewhere_is_reused_with_a_note(built, capsys):
    """A cache entry from another kernel path or library is reused, and says so with the fix."""
    from mgrpo.lab.build import build_identity, build_mismatch

    root, path, sha = built
    manifest = json.loads((path / MANIFEST_NAME).read_text())
    assert build_mismatch(manifest) is None  # built by this process: nothing to say
    assert build_mismatch({}) is None  # an old manifest without versions is not a difference
    here = build_identity()
    other = "AVX512" if here["cpu_capability"] != "AVX512" else "AVX2"
    elsewhere = dict(manifest, versions={**manifest["versions"], "cpu_capability": other,
                                         "transformers": "0.0.1",
                                         "kernel_env": {"MKL_CBWR": other}})
    note = build_mismatch(elsewhere)
    assert f"cpu_capability {other} there, {here['cpu_capability']} here" in note
    assert f"transformers 0.0.1 there, {here['transformers']} here" in note
    assert f"ATEN_CPU_CAPABILITY={other.lower()} MKL_CBWR={other}" in note
    # the manifest is not part of the verified files: rewrite it and reuse the entry
    (path / MANIFEST_NAME).write_text(json.dumps(elsewhere))
    try:
        capsys.readouterr()
        assert build_lab_model(QUICK_LAB_CONFIG, cache_dir=root, progress=False) == path
        err = capsys.readouterr().err
        assert "built under another setup" in err and f"cpu_capability {other} there" in err
        assert sha256_file(path / "model.safetensors") == sha  # reused, not rebuilt
    finally:
        (path / MANIFEST_NAME).write_text(json.dumps(manifest, indent=2, sort_keys=True) + "\n")
