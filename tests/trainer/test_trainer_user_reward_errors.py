"""A user's reward (or embedding) function that breaks its contract or raises, through the
real CLI: one clean line naming the function, the step and the expected shape, or the user's
own frames then that line; exit 2, and no frame of mgrpo's in between."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

USER_CODE = '''
import math

def wrong_shape(record):
    return [[1.0]] * len(record.prompts)

def not_a_number(record):
    B, M = record.shape
    return [[math.nan] * M for _ in range(B)]

def _helper(record):
    return {}["missing"]

def boom(record):
    return _helper(record)

def flat_embedding(texts):
    return [1.0] * len(texts)
'''
MGRPO_FRAME = re.compile(r'File ".*[/\\\\]mgrpo[/\\\\]')


def _train(tmp_path: Path, *overrides: str) -> subprocess.CompletedProcess:
    (tmp_path / "my_rewards.py").write_text(USER_CODE)
    env = {**os.environ, "PYTHONHASHSEED": "0", "OMP_NUM_THREADS": "1"}
    return subprocess.run(
        [sys.executable, "-m", "mgrpo", "train", "tiny", "trainer.max_steps=1",
         "trainer.progress=false", "trainer.threads=1", "validation.data=null",
         "trainer.report_to=[]", "-o", str(tmp_path / "run"), *overrides],
        capture_output=True, text=True, timeout=300, cwd=tmp_path, env=env)


def _lines(stderr: str) -> list[str]:
    return [line for line in stderr.splitlines() if line.strip()]


@pytest.mark.parametrize(("fn", "line"), [
    ("wrong_shape", "mgrpo train: error: reward function my_rewards.py:wrong_shape at step 1 "
                    "returned shape (2, 1), expected (B, M) = (2, 6)"),
    ("not_a_number", "mgrpo train: error: reward function my_rewards.py:not_a_number at step 1 "
                     "returned NaN/inf (at [prompt, rollout] [[0, 0], [0, 1], [0, 2], [0, 3], "
                     "[0, 4]]), expected finite numbers, (B, M) = (2, 6)"),
])
def test_a_broken_contract_is_one_clean_line(tmp_path, fn, line):
    done = _train(tmp_path, f"algorithm.reward=my_rewards.py:{fn}")
    assert done.returncode == 2, done.stderr[-3000:]
    assert "Traceback" not in done.stderr
    assert _lines(done.stderr)[-1] == line
    assert sum("my_rewards.py" in x for x in _lines(done.stderr)) == 1  # said once


def test_an_exception_shows_the_users_frames_then_one_line(tmp_path):
    done = _train(tmp_path, "algorithm.reward=my_rewards.py:boom")
    assert done.returncode == 2, done.stderr[-3000:]
    lines = _lines(done.stderr)
    start = lines.index("Traceback (most recent call last):")
    trace = lines[start:]
    assert re.search(r'my_rewards\.py", line \d+, in boom', "\n".join(trace))
    assert re.search(r'my_rewards\.py", line \d+, in _helper', "\n".join(trace))
    assert trace[-2] == "KeyError: 'missing'"
    assert trace[-1] == ("mgrpo train: error: reward function my_rewards.py:boom raised at "
                         "step 1: KeyError: 'missing'")
    assert not MGRPO_FRAME.search(done.stderr), done.stderr  # no mgrpo frame in between
    assert done.stderr.count("Traceback") == 1


def test_a_broken_embedding_function_is_one_clean_line(tmp_path):
    done = _train(tmp_path, "algorithm.preset=evol-rl",
                  "algorithm.evol_embedding=my_rewards.py:flat_embedding")
    assert done.returncode == 2, done.stderr[-3000:]
    assert "Traceback" not in done.stderr
    assert _lines(done.stderr)[-1] == (
        "mgrpo train: error: embedding function my_rewards.py:flat_embedding at step 1 returned "
        "shape (16,), expected (R, D) with R = 16 texts and D >= 1")


@pytest.mark.parametrize(("spec", "message"), [
    ("broken.py:fn", "importing .*broken.py failed: SyntaxError"),
    ("my_rewards.py:nowhere", "my_rewards.py has no attribute 'nowhere'"),
    ("missing.py:fn", "file missing.py not found"),
])
def test_load_errors_stay_one_config_line(tmp_path, spec, message):
    (tmp_path / "broken.py").write_text("def fn(record:\n")
    done = _train(tmp_path, f"algorithm.reward={spec}")
    assert done.returncode == 2 and "Traceback" not in done.stderr
    (line,) = _lines(done.stderr)
    assert line.startswith("mgrpo train: config error: algorithm.reward: ")
    assert re.search(message, line), line
    assert not (tmp_path / "run").exists()
