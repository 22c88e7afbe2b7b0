"""The kept KV workspace through validation, and a graph cache sized from its key space (CPU:
the engine's static step with `capture_eager`, so every decision of the CUDA path runs).

- Validation (`FastEngine.keeping_workspace()`) decodes inside the training workspace: it
  neither grows it nor replaces it nor evicts the training graphs; a validation call the
  workspace cannot hold uses a side workspace freed at exit; a block entered before any
  training call frees what it allocated, so what stays through the backward is at most a
  training call's shape.
- The default graph cache holds the whole key space of its calls: a decode loop walks its
  attended spans in order, so an LRU bound below the key space evicts every graph before its
  reuse and every step captures them again.
"""

from __future__ import annotations

import dataclasses
import random

import torch

from mgrpo.models.tiny import build_tiny_model
from mgrpo.models.tokenizer import build_char_tokenizer
from mgrpo.rollout import RolloutBatch, SamplingParams, make_engine
from mgrpo.rollout.cuda_graph import GraphCache, capture_eager, key_space, segment_sizes
from mgrpo.rollout.decode_state import compaction
from mgrpo.seeds import chunk_seed

TOK = build_char_tokenizer()
PROMPTS = ["1+2=", "hello world, x", "a", "What is 7*6? Answer:"]
TRAIN = SamplingParams(max_new_tokens=12, temperature=1.0, seed=5)


def _prompts(k: int = 4) -> list[list[int]]:
    return [TOK.encode(p) for p in PROMPTS[:k]]


def _model():
    return build_tiny_model(TOK, arch="qwen3", seed=0, dtype=torch.float64)


def _trainer_engine(model, *, attn_bucket: int = 4, graphs: GraphCache | None = None):
    """Built as the trainer builds it (keep_workspace unset: kept because graphs are on)."""
    engine = make_engine("fast", model, pad_token_id=0, check_every=2, attn_bucket=attn_bucket,
                         fuse_weights=False)
    engine.static = True  # the CUDA-graph form of the step, on CPU
    engine.graphs = graphs or GraphCache(capture=capture_eager)
    assert engine.keep_workspace
    return engine


def _same(a, b) -> None:
    assert torch.equal(a.response_ids, b.response_ids)
    assert torch.equal(a.logprobs, b.logprobs) and torch.equal(a.entropies, b.entropies)


def test_validation_decodes_in_the_training_workspace_and_keeps_its_graphs() -> None:
    model = _model()
    engine = _trainer_engine(model)
    engine.generate(_prompts(2), 4, TRAIN)  # a training step: 8 rows
    ws, cache = engine._workspace, engine.graphs
    training_keys = set(cache.graphs)
    assert ws.rows == 8 and training_keys
    val = dataclasses.replace(TRAIN, seed=9)
    with engine.keeping_workspace():  # validation: 4 prompts x 4 samples = 16 rows
        got = engine.generate(_prompts(4), 4, val)
        assert engine._workspace is ws  # not grown, not replaced
    # it ran as loops of 2 prompts (8 rows, what the workspace holds), seeded per loop
    plain = make_engine("fast", model, pad_token_id=0, check_every=2, attn_bucket=4,
                        fuse_weights=False)
    plain.static = True
    parts = [plain.generate(_prompts(4)[i : i + 2], 4,
                            dataclasses.replace(val, seed=chunk_seed(val.seed, c)))
             for c, i in enumerate((0, 2))]
    _same(got, RolloutBatch.cat(parts, [2, 2], 0))
    assert engine._workspace is ws and ws.rows == 8  # released: nothing larger stays
    assert training_keys <= set(cache.graphs) and cache.resets == 0 and cache.evictions == 0
    captured = cache.captures
    engine.generate(_prompts(2), 4, TRAIN)  # the next training step replays its graphs
    assert cache.captures == captured


def test_a_validation_call_the_workspace_cannot_hold_uses_a_side_workspace_freed_at_exit():
    engine = _trainer_engine(_model())
    engine.generate(_prompts(2), 4, TRAIN)
    ws, cache = engine._workspace, engine.graphs
    captured, kept_bytes = cache.captures, engine.workspaces.held_bytes
    longer = SamplingParams(max_new_tokens=260, temperature=1.0, seed=1)  # > 256 positions
    with engine.keeping_workspace():
        engine.generate(_prompts(1), 2, longer)
        engine.generate(_prompts(1), 2, longer)  # the side workspace is kept in the block
        assert engine.workspaces.held_bytes > kept_bytes
        assert engine._workspace is ws and cache.captures == captured
    assert engine.workspaces.held_bytes == kept_bytes  # the side workspace is gone
    engine.generate(_prompts(2), 4, TRAIN)
    assert cache.captures == captured and cache.resets == 0


def test_validation_before_any_training_call_frees_what_it_allocated() -> None:
    engine = _trainer_engine(_model())
    with engine.keeping_workspace():  # the step-0 validation: 16 rows
        engine.generate(_prompts(4), 4, TRAIN)
        assert engine._workspace.rows == 16
    assert engine._workspace is None and engine.graphs.graphs_alive == 0
    engine.generate(_prompts(2), 4, TRAIN)  # training allocates its own shape
    assert engine._workspace.rows == 8


def test_a_release_inside_validation_frees_the_frozen_workspace_as_well() -> None:
    engine = _trainer_engine(_model())
    engine.generate(_prompts(2), 4, TRAIN)
    with engine.keeping_workspace():
        engine.release_workspace()
        assert engine.workspaces.held_bytes == 0 and engine.graphs.graphs_alive == 0
        engine.generate(_prompts(4), 4, TRAIN)  # allocated in the block: freed at exit
    assert engine._workspace is None and engine.workspaces.held_bytes == 0


def test_every_later_step_replays_the_graphs_of_the_first() -> None:
    """300 attended spans per call (attn_bucket 1) is more keys than the former fixed bound
    of 256 graphs: under that bound the second call captured every graph again."""
    never = (10**6,)  # a stop id no model emits: every row runs its 300 tokens
    params = SamplingParams(max_new_tokens=300, temperature=1.0, seed=3, stop_token_ids=never)
    engine = _trainer_engine(_model(), attn_bucket=1)
    per_step = []
    for step in range(3):
        before = engine.graphs.captures
        engine.generate(_prompts(2), 2, dataclasses.replace(params, seed=step))
        per_step.append(engine.graphs.captures - before)
    assert per_step[0] == 299 and per_step[1:] == [0, 0], per_step  # a step per new token
    assert engine.graphs.evictions == 0 and engine.graphs.bound >= per_step[0]
    fixed = _trainer_engine(_model(), attn_bucket=1, graphs=GraphCache(256, capture=capture_eager))
    fixed.generate(_prompts(2), 2, params)
    first = fixed.graphs.captures
    fixed.generate(_prompts(2), 2, params)
    assert fixed.graphs.captures == 2 * first  # an LRU bound below the key space thrashes


def test_captures_per_step_fall_to_zero_with_random_finishes() -> None:
    """Rows that stop early compact the batch into other layouts; every key is captured at
    most once (no eviction), so captures per step only count keys never visited before."""
    engine = _trainer_engine(_model())
    stop = tuple(range(3, 40))  # many stop ids: rows finish at scattered steps
    per_step = []
    for step in range(6):
        params = SamplingParams(max_new_tokens=24, temperature=1.0, seed=step, stop_token_ids=stop)
        before = engine.graphs.captures
        engine.generate(_prompts(4), 3, params)
        per_step.append(engine.graphs.captures - before)
    cache = engine.graphs
    assert cache.evictions == 0 and cache.captures == cache.graphs_alive
    assert per_step[0] > 0 and sum(per_step[3:]) < per_step[0], per_step


def test_the_key_space_counts_every_layout_compaction_can_reach() -> None:
    assert [segment_sizes(r) for r in (1, 2, 3, 4, 8, 24)] == [2, 3, 4, 4, 5, 7]
    assert key_space([24, 8], 56) == (7 * 5 - 1) * 56  # the paper's loop: 1,904 keys
    rng = random.Random(0)
    for _ in range(200):
        counts = [rng.randint(1, 12) for _ in range(rng.randint(1, 2))]
        plans = [object() for _ in counts]
        segments, start = [], 0
        for plan, n in zip(plans, counts):
            segments.append(_Seg(plan, start, start + n))
            start += n
        seg_of = torch.cat([torch.full((n,), g) for g, n in enumerate(counts)])
        done = torch.zeros(start, dtype=torch.bool)
        layouts = {tuple(counts)}
        while not bool(done.all()):
            done |= torch.rand(done.shape[0], generator=torch.Generator().manual_seed(
                rng.randint(0, 10**6))) < 0.3
            live = [int((~done[seg_of == g]).sum()) for g in range(len(counts))]
            if sum(live) == 0:
                break
            out = compaction(segments, plans, done, live,
                             lambda n: 1 << (n - 1).bit_length(), 0.75)
            if out is not None:
                keep, segments = out
                done, seg_of = done[keep], seg_of[keep]
                sizes = [0] * len(counts)
                for seg in segments:
                    sizes[plans.index(seg.plan)] = seg.stop - seg.start
                layouts.add(tuple(sizes))
        allowed = [{n, 0} | {1 << k for k in range(n.bit_length()) if 1 << k < n}
                   for n in counts]
        assert all(all(s in allowed[g] for g, s in enumerate(lay)) for lay in layouts)
        assert len(layouts) <= key_space(counts, 1)


@dataclasses.dataclass
class _Seg:
    """`decoder.Segment`'s fields, over stand-in plans (compaction reads only these)."""

    plan: object
    start: int
    stop: int
