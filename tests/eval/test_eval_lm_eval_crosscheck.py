"""Cross-check with lm-evaluation-harness: on a checkpoint mgrpo trained and exported, with the
same problems and prompt and greedy decoding, lm-eval's `hf` model (its own generation loop,
its own regex filter and exact_match metric) and `mgrpo eval` must agree on every problem's
correctness. The task is a local YAML file over a local JSONL file: no hub access.

Slow: the lab model (built once, ~2 min on a 2-vCPU machine, then cached) is the smallest
model here that is right on part of the problems, so both verdicts are compared."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from mgrpo.cli import main

LAB_PROMPT = "Q:{question}=?\nA:"
MAX_NEW_TOKENS = 48
N_PROBLEMS = 16
TASK = "mgrpo_crosscheck"


@pytest.fixture(scope="module")
def lm_eval():
    return pytest.importorskip("lm_eval", reason="lm-eval not installed (pip install 'mgrpo[lm-eval]')")


@pytest.fixture(scope="module")
def exported_checkpoint(lm_eval, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The lab model, trained one M-GRPO step by mgrpo; its step-1 HF directory."""
    from mgrpo.config import resolve_config
    from mgrpo.lab import build_lab_model
    from mgrpo.train.run.trainer import train

    root = tmp_path_factory.mktemp("crosscheck")
    model_dir = build_lab_model(progress=False)  # the shared lab cache
    cfg = resolve_config("demo", [f"model.name={model_dir}", "trainer.max_steps=1",
                                  "trainer.prompts_per_step=2", "algorithm.rollouts=4",
                                  "trainer.micro_batch_size=8", "data.limit=8",
                                  "validation.data=null", "trainer.progress=false",
                                  "trainer.report_to=[]"])
    run = train(cfg, root / "run")
    checkpoint = run / "checkpoints" / "step-1"
    assert (checkpoint / "config.json").is_file() and (checkpoint / "tokenizer.json").is_file()
    return checkpoint


@pytest.fixture(scope="module")
def problems(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from mgrpo.lab import lab_task_problems

    path = tmp_path_factory.mktemp("problems") / "lab_problems.jsonl"
    rows = [{"id": r.id, "question": r.question, "answer": r.answer}
            for r in lab_task_problems(split="val", n=N_PROBLEMS, seed=3)]
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return path


def _lm_eval_task(directory: Path, data_file: Path) -> Path:
    """A local lm-eval task: the same prompt, greedy, the last \\boxed{...} vs the answer."""
    task = {
        "task": TASK,
        "dataset_path": "json",
        "dataset_kwargs": {"data_files": {"test": str(data_file)}},
        "test_split": "test",
        "output_type": "generate_until",
        "doc_to_text": LAB_PROMPT.replace("{question}", "{{question}}"),
        "doc_to_target": "{{answer}}",
        "generation_kwargs": {"until": [], "do_sample": False, "max_gen_toks": MAX_NEW_TOKENS},
        "filter_list": [{"name": "boxed", "filter": [
            {"function": "regex", "regex_pattern": r"\\boxed\{([^{}]*)\}", "group_select": -1},
            {"function": "take_first"}]}],
        "metric_list": [{"metric": "exact_match", "aggregation": "mean", "higher_is_better": True}],
        "metadata": {"version": 1.0},
    }
    directory.mkdir(parents=True, exist_ok=True)
    (directory / f"{TASK}.yaml").write_text(yaml.safe_dump(task, sort_keys=False), encoding="utf-8")
    return directory


@pytest.mark.slow
# the fixture builds the lab model on an empty cache (about 2 min alone on 2 cores, several
# times that on a loaded machine): more than the suite's 300 s per test
@pytest.mark.timeout(1200)
def test_lm_eval_and_mgrpo_eval_agree_on_every_problem(lm_eval, exported_checkpoint, problems, tmp_path,
                                                       monkeypatch):
    from lm_eval import simple_evaluate
    from lm_eval.tasks import TaskManager

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    monkeypatch.setenv("HF_DATASETS_CACHE", str(tmp_path / "hf-datasets"))

    out = tmp_path / "mgrpo-eval"
    rc = main(["eval", str(exported_checkpoint), "--benchmark-file", str(problems), "--kind", "math",
               "--template", LAB_PROMPT, "--temperature", "0", "--max-new-tokens", str(MAX_NEW_TOKENS),
               "--engine", "hf", "--dtype", "float32", "--device", "cpu", "-o", str(out)])
    assert rc == 0
    ours = {row["problem_id"]: row for row in map(json.loads, (out / "samples" / f"{problems.stem}.jsonl")
                                                  .read_text().splitlines())}

    results = simple_evaluate(
        model="hf",
        model_args={"pretrained": str(exported_checkpoint), "dtype": "float32"},
        tasks=[TASK], task_manager=TaskManager(include_path=str(_lm_eval_task(tmp_path / "task", problems))),
        num_fewshot=0, batch_size=1, device="cpu", log_samples=True, random_seed=0,
        numpy_random_seed=0, torch_random_seed=0, fewshot_random_seed=0,
    )
    theirs = {s["doc"]["id"]: s for s in results["samples"][TASK] if s["filter"] == "boxed"}
    assert sorted(theirs) == sorted(ours) and len(ours) == N_PROBLEMS
    disagree = [(pid, ours[pid]["response"], theirs[pid]["resps"][0][0])
                for pid in ours if bool(ours[pid]["correct"]) != bool(theirs[pid]["exact_match"])]
    assert disagree == []
    n_correct = sum(bool(row["correct"]) for row in ours.values())
    assert 0 < n_correct < N_PROBLEMS, n_correct  # both verdicts occur: the check is not vacuous
    accuracy = json.loads((out / "results.json").read_text())["benchmarks"][problems.stem]["accuracy"]
    assert results["results"][TASK]["exact_match,boxed"] == pytest.approx(accuracy)
