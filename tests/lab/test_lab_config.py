"""LabConfig: stable hash, validation, TaskSpec membership; the default world's numbers (slow)."""

from __future__ import annotations

import hashlib
import json

import pytest

from mgrpo.lab.config import (
    DEFAULT_LAB_CONFIG,
    LAB_FORMAT_VERSION,
    LAB_TEMPLATE,
    LabConfig,
    TaskSpec,
    question_bucket,
)


def test_hash_is_canonical_json_sha256_and_sensitive():
    payload = json.dumps({"format": LAB_FORMAT_VERSION, "config": DEFAULT_LAB_CONFIG.to_dict()},
                         sort_keys=True, separators=(",", ":"))
    assert DEFAULT_LAB_CONFIG.config_hash() == hashlib.sha256(payload.encode()).hexdigest()[:16]
    assert LabConfig().config_hash() == DEFAULT_LAB_CONFIG.config_hash()
    changed = {DEFAULT_LAB_CONFIG.replace(seed=1).config_hash(),
               DEFAULT_LAB_CONFIG.replace(lr=1e-3).config_hash(),
               DEFAULT_LAB_CONFIG.replace(task=TaskSpec(4, 5, 9)).config_hash()}
    assert DEFAULT_LAB_CONFIG.config_hash() not in changed and len(changed) == 3


def test_bucket_is_stable_and_in_range():
    # sha256-based, not Python's randomised hash(): fixed values across processes
    assert question_bucket("3+4-2+1") == int(hashlib.sha256(b"3+4-2+1").hexdigest()[:8], 16) % 100
    assert all(0 <= question_bucket(str(i)) < 100 for i in range(200))


@pytest.mark.parametrize(
    "changes, match",
    [
        (dict(hidden_size=0), "hidden_size"),
        (dict(template="no slot"), "template"),
        (dict(template="{question}\u00e9"), "alphabet"),
        (dict(sft_mix=((0.5, TaskSpec(2, 3, 9)),)), "sum to 1"),
        (dict(sft_mix=()), "sft_mix"),
        (dict(lr=0.0), "lr"),
        (dict(measure_temperature=0.0), "measure_temperature"),
    ],
)
def test_validation(changes, match):
    with pytest.raises(ValueError, match=match):
        DEFAULT_LAB_CONFIG.replace(**changes)


def test_taskspec():
    spec = TaskSpec(min_operands=4, max_operands=4, max_value=9)
    assert spec.contains("1+2-3+4") and not spec.contains("1+2-3") and not spec.contains("1+2-3+10")
    assert not TaskSpec(2, 2, 9, ops="+").contains("1-2")
    with pytest.raises(ValueError, match="ops"):
        TaskSpec(2, 2, 9, ops="/")
    with pytest.raises(ValueError, match="max_operands"):
        TaskSpec(3, 2, 9)
    assert "{question}" in LAB_TEMPLATE


@pytest.mark.slow
def test_default_world_has_a_vote_gap(tmp_path):
    """The default lab model: hard-task sample accuracy in [20%, 60%], maj@G clearly above."""
    from mgrpo.lab import build_lab_model
    from mgrpo.lab.cache import read_manifest

    metrics = read_manifest(build_lab_model(cache_dir=tmp_path, progress=False))["metrics"]
    assert 0.2 <= metrics["sample_accuracy"] <= 0.6, metrics
    assert metrics["maj_accuracy"] >= metrics["sample_accuracy"] + 0.05, metrics
