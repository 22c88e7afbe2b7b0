"""Training-data sources: user-supplied registry sets and the deterministic batch order."""

from __future__ import annotations

import json

from mgrpo.config import resolve_config
from mgrpo.train.run.prompt_set import load_records


def test_math_train_comes_from_the_users_file(tmp_path, monkeypatch):
    rows = [{"problem": f"What is {i}+1?", "answer": str(i + 1)} for i in range(5)]
    path = tmp_path / "math_train.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    monkeypatch.setenv("MGRPO_MATH_TRAIN_FILE", str(path))
    cfg = resolve_config("paper")
    records = load_records(cfg.data, cfg.data.train, split="train", seed=0)
    assert [r.answer for r in records] == ["1", "2", "3", "4", "5"]
    assert records[0].question.startswith("What is 0+1?")


def test_lab_val_trains_on_exactly_the_validation_problems():
    cfg = resolve_config("demo")
    train = load_records(cfg.data, "lab-val", split="train", seed=cfg.seed)
    val = load_records(cfg.data, "lab", split="val", seed=cfg.seed + 1)[: cfg.validation.limit]
    assert [r.question for r in train] == [r.question for r in val]
    assert len(train) == cfg.data.limit == 128
