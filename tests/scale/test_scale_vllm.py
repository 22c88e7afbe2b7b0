"""Two CPU ranks (torchrun, gloo), each driving its own vLLM engine over its half of every
step's prompts (`distributed_executor_backend="external_launcher"`, TRL's colocate mode):
`mgrpo train --nproc 2 model.engine=vllm` equals one process. With
`distributed.seed_per_prompt` each prompt is one vLLM call whose requests are seeded by the
global prompt index, so the rollouts are the same and the metrics agree within fp32 reduction
order. So do the weights, except where AdamW normalises a near-zero gradient: there a
reduction-order difference of ~1e-9 can move an entry by up to lr per step, so those entries
(a small share) are bounded by the two steps' 2 lr instead."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from safetensors.torch import load_file

from mgrpo.rollout.vllm_engine import vllm_unavailable_reason

REASON = vllm_unavailable_reason()
pytestmark = [pytest.mark.vllm, pytest.mark.skipif(REASON is not None, reason=REASON or ""),
              pytest.mark.timeout(1800)]  # several CLI runs, each starting vLLM

COMMON = ["trainer.progress=false", "data.answer_kind=number", "validation.data=null",
          "distributed.seed_per_prompt=true", "distributed.timeout_s=120", "model.engine=vllm",
          "model.tiny_hidden_size=128", "trainer.max_steps=2", "trainer.prompts_per_step=4",
          "generation.max_new_tokens=12"]
METRIC_ATOL = 1e-5
WEIGHT_ATOL = 1e-5  # most entries
ADAM_BOUND = 2 * 1e-3  # any entry: two AdamW steps at the tiny recipe's lr 1e-3
MOVED_SHARE = 0.01  # share of entries allowed past WEIGHT_ATOL (near-zero gradients)


def _train(out: Path, *extra: str) -> None:
    cmd = [sys.executable, "-m", "mgrpo", "train", "tiny", "-o", str(out), *COMMON, *extra]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stderr[-4000:]


def _metrics(run: Path) -> list[dict]:
    return [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]


def test_two_ranks_each_with_its_own_vllm_engine_equal_one_process(tmp_path):
    _train(tmp_path / "one")
    _train(tmp_path / "two", "--nproc", "2")
    one, two = _metrics(tmp_path / "one"), _metrics(tmp_path / "two")
    assert [m["step"] for m in one] == [m["step"] for m in two] == [1, 2]
    for x, y in zip(one, two):
        assert x["rollout/logp_mismatch_mean"] < 1e-4 and y["rollout/logp_mismatch_mean"] < 1e-4
        for key, value in x.items():
            if key.startswith("time/") or not isinstance(value, float):
                continue
            assert abs(value - y[key]) <= METRIC_ATOL, (x["step"], key, value, y[key])
    wa = load_file(str(tmp_path / "one/checkpoints/step-2/model.safetensors"))
    wb = load_file(str(tmp_path / "two/checkpoints/step-2/model.safetensors"))
    moved = total = 0
    for name, tensor in wa.items():
        diff = (wb[name] - tensor).abs()
        assert float(diff.max()) <= ADAM_BOUND * (1 + 1e-3), name
        moved += int((diff > WEIGHT_ATOL).sum())
        total += diff.numel()
    assert moved <= MOVED_SHARE * total, (moved, total)
