"""`mgrpo eval` end to end on a tiny random model: files, counts, protocol, bad input."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from mgrpo.cli import main
from mgrpo.data.benchmarks import load_benchmark

SRC = Path(__file__).resolve().parents[2] / "src"


@pytest.fixture(scope="module")
def tiny_model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from mgrpo.models.tiny import build_tiny_model
    from mgrpo.models.tokenizer import build_char_tokenizer

    path = tmp_path_factory.mktemp("tiny-model")
    tokenizer = build_char_tokenizer()
    build_tiny_model(tokenizer, seed=0).save_pretrained(path)
    tokenizer.save_pretrained(path)
    return path


def read_jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


def test_subprocess_eval_writes_consistent_files(tiny_model_dir: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    env = {**os.environ, "PYTHONPATH": str(SRC) + os.pathsep + os.environ.get("PYTHONPATH", "")}
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "mgrpo",
            "eval",
            str(tiny_model_dir),
            "-b",
            "math500",
            "--limit",
            "5",
            "--samples",
            "2",
            "--max-new-tokens",
            "12",
            "-o",
            str(out),
        ],
        capture_output=True,
        text=True,
        timeout=240,
        env=env,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    results = json.loads((out / "results.json").read_text())
    r = results["benchmarks"]["math500"]
    assert r["n_problems"] == 5 and r["samples"] == 2
    for key in (
        "avg@k",
        "pass@1",
        "pass@2",
        "pass@k",
        "maj@k",
        "response_length_mean",
        "wall_s",
        "time/generate",
        "overhead_s",
        "overhead_fraction",
    ):
        assert key in r, key
    assert 0 <= r["pass@1"] <= r["pass@2"] <= 1 and r["avg@k"] == r["pass@1"]
    assert r["wall_s"] >= r["time/generate"] > 0 and r["overhead_s"] == pytest.approx(
        r["wall_s"] - r["time/generate"]
    )
    s = r["settings"]
    assert (s["samples"], s["max_new_tokens"], s["temperature"], s["limit"]) == (2, 12, 0.8, 5)
    assert s["model"] == str(tiny_model_dir) and s["stop_token_ids"] == [2]
    rows = read_jsonl(out / "samples" / "math500.jsonl")
    assert len(rows) == 10
    ids = [rec.id for rec in load_benchmark("math500", limit=5)]
    assert [row["problem_id"] for row in rows] == [i for i in ids for _ in range(2)]
    for row in rows:
        assert set(row) >= {"problem_id", "prompt", "response", "extracted", "reference", "correct"}
        assert 1 <= row["length"] <= 12
    assert sum(row["correct"] for row in rows) / 10 == pytest.approx(r["avg@k"])
    assert sum(row["length"] for row in rows) / 10 == pytest.approx(r["response_length_mean"])
    assert "| math500 | 5 | 2 |" in proc.stdout  # the markdown table


def test_paper_protocol_in_process(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    out = tmp_path / "paper"
    rc = main(
        [
            "eval",
            "tiny",
            "-b",
            "aime24,amc23",
            "--limit",
            "1",
            "--protocol",
            "paper",
            "--max-new-tokens",
            "6",
            "--engine",
            "hf",
            "-o",
            str(out),
        ]
    )
    assert rc == 0
    results = json.loads((out / "results.json").read_text())["benchmarks"]
    assert (
        results["aime24"]["samples"] == 8 and results["amc23"]["samples"] == 1
    )  # avg@8 on AIME only
    assert results["aime24"]["settings"]["protocol"] == "paper"
    assert len(read_jsonl(out / "samples" / "aime24.jsonl")) == 8
    assert set(results["aime24"]) >= {f"pass@{j}" for j in range(1, 9)}
    assert (out / "results.md").read_text().startswith("| benchmark |")


def test_custom_benchmark_file(tmp_path: Path) -> None:
    data = tmp_path / "mine.jsonl"
    data.write_text(
        json.dumps({"id": "q1", "question": "1+1?", "options": ["1", "2"], "answer": "2"}) + "\n"
    )
    out = tmp_path / "custom"
    rc = main(
        [
            "eval",
            "tiny",
            "--benchmark-file",
            str(data),
            "--kind",
            "choice",
            "--samples",
            "2",
            "--max-new-tokens",
            "4",
            "-o",
            str(out),
        ]
    )
    assert rc == 0
    (row, _) = read_jsonl(out / "samples" / "mine.jsonl")
    assert row["reference"] in ("A", "B") and "permutation" in row and "choice_seed" in row


@pytest.mark.parametrize(
    ("argv", "needle"),
    [
        (["-b", "math5000"], "unknown benchmark 'math5000'"),
        (["-b", "gpqa_diamond"], "Required columns"),
        (["--kind", "math"], "--kind needs --benchmark-file"),
        (["--samples", "0"], "--samples must be >= 1"),
        (["-b", "aime24,aime24"], "named twice"),
        (["--top-p", "1.5"], "--top-p must be in (0, 1]"),
        (["-b", "math500,aime24", "--benchmark-file", "x.jsonl"], "exactly one benchmark"),
    ],
)
def test_bad_cli_input_fails_before_loading_a_model(
    argv: list[str],
    needle: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture,
) -> None:
    monkeypatch.setenv("MGRPO_DATA_DIR", str(tmp_path))
    monkeypatch.setitem(sys.modules, "datasets", None)
    rc = main(["eval", "/nonexistent/model", *argv, "-o", str(tmp_path / "o")])
    assert rc == 2
    assert needle in capsys.readouterr().err


def test_missing_model_is_a_clear_error(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    rc = main(
        [
            "eval",
            str(tmp_path / "no-model"),
            "-b",
            "aime24",
            "--limit",
            "1",
            "-o",
            str(tmp_path / "o"),
        ]
    )
    assert rc == 2
    assert "no-model" in capsys.readouterr().err


def test_list_benchmarks(capsys: pytest.CaptureFixture) -> None:
    assert main(["eval", "x", "--list"]) == 0
    listing = capsys.readouterr().out
    assert "gpqa_diamond" in listing and "mbpp_plus" in listing
