"""`mgrpo train` end to end in subprocesses: files, reload, exact resume, bad input."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

REQUIRED_KEYS = (
    "step reward/mean label/vote_share label/none_fraction entropy/policy entropy/momentum "
    "filter/dropped_fraction response/length_mean loss/pg loss/kl grad_norm lr time/generate "
    "time/vote time/reward time/logprobs time/train time/ema time/step label/accuracy policy/accuracy"
).split()
FAST = ["trainer.progress=false", "trainer.threads=1"]


def mgrpo(*args: str, timeout: float = 240) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONHASHSEED": "0", "OMP_NUM_THREADS": "1"}
    return subprocess.run(
        [sys.executable, "-m", "mgrpo", *args],
        capture_output=True, text=True, timeout=timeout, env=env,
    )


def metrics(run: Path) -> list[dict]:
    return [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]


def untimed(rows: list[dict]) -> list[dict]:
    return [{k: v for k, v in r.items() if not k.startswith("time/")} for r in rows]


def test_train_tiny_writes_everything_and_reloads(tmp_path):
    out = tmp_path / "run"
    start = time.perf_counter()
    proc = mgrpo("train", "tiny", "-o", str(out), *FAST)
    elapsed = time.perf_counter() - start
    assert proc.returncode == 0, proc.stderr
    print(f"3-step tiny run: {elapsed:.1f} s")
    rows = metrics(out)
    assert [r["step"] for r in rows] == [0, 1, 2, 3]  # step 0: validation before training
    assert "val/accuracy" in rows[0] and "reward/mean" not in rows[0]
    for key in REQUIRED_KEYS:
        assert key in rows[1], key
    assert "val/accuracy" in rows[-1]
    assert (out / "config.yaml").is_file()
    assert any((out / "tensorboard").iterdir())
    ckpt = out / "checkpoints" / "step-3"
    for name in ("manifest.json", "momentum.safetensors", "optimizer.safetensors",
                 "trainer_state.json", "tokenizer.json"):
        assert (ckpt / name).is_file(), name
    from transformers import AutoModelForCausalLM, AutoTokenizer

    model = AutoModelForCausalLM.from_pretrained(ckpt)
    tok = AutoTokenizer.from_pretrained(ckpt)
    assert model.config.vocab_size == len(tok)
    assert "run directory" in proc.stderr


def test_resume_is_exact(tmp_path):
    straight, split = tmp_path / "straight", tmp_path / "split"
    common = ["trainer.max_steps=4", "trainer.save_every=2", *FAST]
    assert mgrpo("train", "tiny", "-o", str(straight), *common).returncode == 0
    first = mgrpo("train", "tiny", "-o", str(split), "trainer.stop_after=2", *common)
    assert first.returncode == 0, first.stderr
    second = mgrpo("train", "tiny", "-o", str(split), "--resume", *common)
    assert second.returncode == 0, second.stderr
    assert "resumed from" in second.stderr
    assert untimed(metrics(straight)) == untimed(metrics(split))
    from safetensors.torch import load_file

    a = load_file(str(straight / "checkpoints" / "step-4" / "model.safetensors"))
    b = load_file(str(split / "checkpoints" / "step-4" / "model.safetensors"))
    assert a.keys() == b.keys()
    for key in a:
        assert torch.equal(a[key], b[key]), key
    ma = load_file(str(straight / "checkpoints" / "step-4" / "momentum.safetensors"))
    mb = load_file(str(split / "checkpoints" / "step-4" / "momentum.safetensors"))
    for key in ma:
        assert torch.equal(ma[key], mb[key]), key


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["algorithm.rollouts=1"], "algorithm.rollouts"),
        (["algorithm.momentum_rollouts=8"], "algorithm.momentum_rollouts"),
        (["algorithm.nope=1"], "unknown key 'algorithm.nope'"),
        (["optim.lr=-1"], "optim.lr"),
    ],
)
def test_bad_config_is_a_clear_error(args, message):
    from mgrpo.config import ConfigError, resolve_config

    with pytest.raises(ConfigError, match=message.replace("'", ".")):
        resolve_config("tiny", args)


def test_bad_input_on_the_command_line_is_one_clear_line(tmp_path):
    proc = mgrpo("train", "tiny", "-o", str(tmp_path / "run"), "algorithm.nope=1", *FAST)
    assert proc.returncode == 2 and "unknown key 'algorithm.nope'" in proc.stderr
    assert "Traceback" not in proc.stderr


def test_a_missing_data_file_is_a_config_error_before_anything_loads(tmp_path):
    """Checked before the model loads and before the run directory is touched: exit 2 as
    for any config error, the key named, no config.yaml left behind."""
    for key in ("data.train", "validation.data"):
        run = tmp_path / key
        proc = mgrpo("train", "tiny", "-o", str(run), f"{key}=/nonexistent/prompts.jsonl", *FAST)
        assert proc.returncode == 2, proc.stderr
        assert f"config error: {key}='/nonexistent/prompts.jsonl'" in proc.stderr
        assert "file not found" in proc.stderr and "Traceback" not in proc.stderr
        assert "Loading weights" not in proc.stderr  # the model never loaded
        assert not run.exists()


def test_progress_is_plain_lines_in_a_log(tmp_path):
    """Not a terminal (a log file, a pipe): one plain line every tenth of the run, no bar,
    and no library progress bars."""
    proc = mgrpo("train", "tiny", "-o", str(tmp_path / "run"), "trainer.max_steps=3",
                 "trainer.progress=true", "trainer.threads=1", "validation.data=null",
                 "trainer.report_to=[]")
    assert proc.returncode == 0, proc.stderr
    lines = [line for line in proc.stderr.splitlines() if line.startswith("mgrpo m-grpo:")]
    assert [line.split(",")[0] for line in lines] == [
        "mgrpo m-grpo: step 1/3 (33%)", "mgrpo m-grpo: step 2/3 (66%)", "mgrpo m-grpo: step 3/3 (100%)"]
    assert "\r" not in proc.stderr and "it/s" not in proc.stderr and "%|" not in proc.stderr


def test_help_names_every_preset():
    from mgrpo.methods import PRESETS

    def flat(text: str) -> str:  # argparse wraps lines, also after a hyphen
        return re.sub(r"-\s+", "-", " ".join(text.split()))

    top, train = flat(mgrpo("--help").stdout), flat(mgrpo("train", "--help").stdout)
    for name in PRESETS:
        assert name in top and name in train, name


def test_unknown_recipe_lists_shipped_ones(tmp_path):
    proc = mgrpo("train", "no-such-recipe", "-o", str(tmp_path / "r"))
    assert proc.returncode == 2
    assert "tiny" in proc.stderr and "Traceback" not in proc.stderr


def test_dataset_row_without_prompt_field_names_file_and_line(tmp_path):
    data = tmp_path / "prompts.jsonl"
    data.write_text('{"question": "1+1=?", "answer": "2"}\n{"text": "oops"}\n')
    proc = mgrpo("train", "tiny", "-o", str(tmp_path / "run"), f"data.train={data}", *FAST)
    assert proc.returncode != 0
    assert "prompts.jsonl" in proc.stderr and ":2" in proc.stderr, proc.stderr
    assert "Traceback" not in proc.stderr


def test_empty_dataset_is_an_error(tmp_path):
    data = tmp_path / "empty.jsonl"
    data.write_text("")
    proc = mgrpo("train", "tiny", "-o", str(tmp_path / "run"), f"data.train={data}", *FAST)
    assert proc.returncode != 0 and "empty" in proc.stderr.lower(), proc.stderr


def test_existing_run_needs_resume(tmp_path):
    out = tmp_path / "run"
    out.mkdir()
    (out / "metrics.jsonl").write_text("")
    proc = mgrpo("train", "tiny", "-o", str(out), *FAST)
    assert proc.returncode == 1 and "--resume" in proc.stderr
