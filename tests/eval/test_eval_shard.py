"""evaluate_records split over ranks: every rank's metrics equal one process's.

Two "ranks" run as threads (one fast engine each over the same tiny model); `gather`
exchanges their partial results through a barrier, as `all_gather_object` would."""

from __future__ import annotations

import threading

import pytest
import torch

from mgrpo.answers import AnswerChecker
from mgrpo.data.datasets import PromptRecord
from mgrpo.eval import evaluate_records
from mgrpo.models.tiny import build_tiny_model
from mgrpo.models.tokenizer import build_char_tokenizer
from mgrpo.rollout import SamplingParams, make_engine

TOK = build_char_tokenizer()
RECORDS = [PromptRecord(f"p{i}", f"{i}+{i}=", str(2 * i)) for i in range(5)]
PARAMS = SamplingParams(max_new_tokens=6, temperature=1.0, seed=11,
                        stop_token_ids=(TOK.eos_token_id,))


class _Counting:
    """A fast engine that records the seed of every `generate` call it serves."""

    def __init__(self, model) -> None:
        self.engine = make_engine("fast", model, pad_token_id=TOK.pad_token_id)
        self.seeds: list[int] = []

    def generate(self, ids, n, params):
        self.seeds.append(params.seed)
        return self.engine.generate(ids, n, params)


def _run(model, checker, seeds=None, **kw):
    rows: list[dict] = []
    engine = _Counting(model)
    out = evaluate_records(engine, TOK,
                           RECORDS, kind="number", samples=3, params=PARAMS, template="plain",
                           checker=checker, batch_size=2, sample_rows=rows, **kw)
    if seeds is not None:
        seeds.extend(engine.seeds)
    return {k: v for k, v in out.items() if not k.startswith("time/")}, rows


class _Exchange:
    """all_gather_object over threads: every caller gets every caller's object, rank order."""

    def __init__(self, world: int) -> None:
        self.slots: list = [None] * world
        self.barrier = threading.Barrier(world)

    def gather(self, rank: int, obj):
        self.slots[rank] = obj
        self.barrier.wait()
        return list(self.slots)


@pytest.mark.parametrize("world", [2, 4])
def test_split_over_ranks_equals_one_process(world: int) -> None:
    torch.set_num_threads(1)
    model = build_tiny_model(TOK, arch="qwen3", seed=0)
    with AnswerChecker() as checker:
        whole, whole_rows = _run(model, checker)
    exchange, results = _Exchange(world), [None] * world
    seeds: list[list[int]] = [[] for _ in range(world)]

    def rank_main(rank: int) -> None:
        with AnswerChecker() as checker:
            results[rank] = _run(model, checker, seeds[rank], shard=(rank, world),
                                 gather=lambda part: exchange.gather(rank, part))

    threads = [threading.Thread(target=rank_main, args=(r,)) for r in range(world)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=300)
    for metrics, rows in results:
        assert metrics == whole and rows == whole_rows
    assert whole["n_problems"] == len(RECORDS)
    # 3 batches of 2, 2, 1 prompts: batch b (seed 11 + b) runs on rank b mod world only
    assert seeds == [[11 + b for b in range(3)][r::world] for r in range(world)]


def test_bad_shard_is_refused() -> None:
    with pytest.raises(ValueError, match="shard"):
        evaluate_records(None, TOK, RECORDS, kind="number", samples=1, params=PARAMS,
                         shard=(2, 2))
