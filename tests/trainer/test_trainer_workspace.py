"""The trainer's KV workspace on the CUDA-graph path, run on CPU (`capture_eager`): kept from
one training step to the next, never grown by validation (which decodes inside it), its
graphs kept through validation; `generation.keep_workspace=false` frees it after every
rollout, so nothing is held through the backward."""

from __future__ import annotations

from mgrpo.config import config_from_dict, load_recipe
from mgrpo.rollout.cuda_graph import GraphCache, capture_eager
from mgrpo.train.run.trainer import build_run
from mgrpo.train.run.validation import run_validation
from mgrpo.train.step import StepBatch, train_step


def _run(tmp_path, **generation):
    data = load_recipe("tiny")
    data["trainer"].update(progress=False, threads=1)
    data["generation"].update(generation)
    data["validation"].update(limit=8, samples=4)  # 32 rows a call, a step decodes 16
    cfg = config_from_dict(data)
    run = build_run(cfg, tmp_path / "run")
    engine = run.models.policy_engine
    engine.static = True  # the CUDA-graph form of the step, on CPU
    engine.graphs = GraphCache(capture=capture_eager)
    return cfg, run, engine


def _step(cfg, run, step: int) -> None:
    records, ids = run.train_set.batch(step, cfg.trainer.prompts_per_step)
    train_step(run.models, StepBatch(ids, [r.answer for r in records]), cfg, run.spec, step)


def test_validation_neither_grows_the_kept_workspace_nor_drops_its_graphs(tmp_path):
    cfg, run, engine = _run(tmp_path)
    run_validation(run, step=0)  # before any step: what it allocated is freed
    assert engine._workspace is None and engine.graphs.graphs_alive == 0
    _step(cfg, run, 1)
    ws = engine._workspace
    assert ws is not None and ws.rows == 2 * 8  # 2 prompts x (6 policy + 2 momentum) rows
    training_graphs, resets = set(engine.graphs.graphs), engine.graphs.resets
    run_validation(run, step=1)  # 8 prompts x 4 samples: in loops of 4 prompts
    assert engine._workspace is ws and ws.rows == 16
    assert training_graphs <= set(engine.graphs.graphs) and engine.graphs.resets == resets
    _step(cfg, run, 2)
    assert engine._workspace is ws and engine.graphs.evictions == 0
    run.models.checker.close()


def test_keep_workspace_false_frees_it_after_every_rollout(tmp_path):
    cfg, run, engine = _run(tmp_path, keep_workspace=False)
    assert not engine.keep_workspace
    _step(cfg, run, 1)
    assert engine._workspace is None and engine.graphs.graphs_alive == 0
    run.models.checker.close()
