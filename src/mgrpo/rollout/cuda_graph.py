"""CUDA-graph replay of the `fast` engine's static decode step, with bounded memory.

Memory. Every captured graph writes its logits into ONE shared output buffer (rows x V,
fp32, `GraphCache.logits`) instead of owning a (B, V) output of its own, and all graphs share
one private memory pool; the step's other temporaries are freed at the end of each capture,
so they are reused by the next capture (graphs replay one at a time, and nothing but the
shared buffer outlives a replay).

Size. By default the cache holds as many graphs as the keys its calls can visit (`key_space`):
per kind of call (its models and rows per model) the compaction layouts times the attended
spans of the workspace, summed over the kinds of call since the workspace was allocated. A
kept workspace therefore never evicts a graph it will need again, so once every key has been
visited a training step captures nothing. A fixed bound below the key space (`max_graphs`)
evicts least recently used graphs, and a decode loop, which walks its spans in order, then
recaptures them on every call.

Reuse across calls. A graph records addresses: the parameters, the KV cache, the rope
tables, its own input buffers and the logits buffer. The engine keeps the KV cache and rope
tables in a `Workspace` that outlives a call when asked to (`FastEngine(keep_workspace=True)`),
so a later call with the same (models, layout, batch, span) replays the graph captured
before. A key holds the parameter addresses of every model in the call (`plan_fingerprint`),
so graphs of another model set never collide; a new workspace (other shapes) clears the cache.

What a captured step reads, and why each is still valid (and current) at a later replay:
- parameters and buffers of every model: live tensors, updated IN PLACE by the trainer (the
  optimizer step, the bf16 copies' refresh, the momentum EMA); (address, dtype, shape) of
  each is in the key (`plan_fingerprint`), so a replaced tensor means a new graph;
- tensors derived from the parameters (`LayerPlan.DERIVED`: fused q/k/v and gate/up weights
  and biases, the Qwen3 q/k norm weights expanded per head): owned by the engine's
  `decoder.PlanCache` for as long as the parameters are the same tensors, rewritten in place
  at the start of every call (`decoder.refresh_plan_`), in the key too, and referenced by the
  cache entry, so a graph never outlives what it reads;
- the K/V caches and rope tables: views of the `Workspace`; a new workspace resets the cache
  (the rope tables are built from the model's rotary module when the workspace is allocated);
- the step's dynamic inputs (token, position ids, key validity, write column): the graph's
  own buffers, cloned at capture and overwritten before every replay;
- the logits output: the cache's shared buffer;
- Python numbers baked in at capture: attention scale, RMSNorm eps, head counts (config
  values; a model whose config changes is another model).

The bookkeeping is independent of CUDA: `GraphCache(capture=...)` takes the function that
turns a step into a replayable callable (`capture_cuda_graph` on CUDA; the tests pass
`capture_eager`, which replays by running the step again).
"""

from __future__ import annotations

import contextlib
import math
import warnings
from collections import OrderedDict
from collections.abc import Callable, Hashable, Sequence
from dataclasses import dataclass
from typing import NamedTuple

import torch

from mgrpo.rollout.decoder import tensor_key

WORKSPACE_LENGTH_ROUND = 256  # workspace cache length rounded up to this many positions


def _on_device(device: torch.device) -> contextlib.AbstractContextManager:
    """Make `device` current for a CUDA capture / replay (a graph captured while another
    device is current is empty); nothing to do off CUDA."""
    return torch.cuda.device(device) if device.type == "cuda" else contextlib.nullcontext()


def capture_cuda_graph(run: Callable[[], None], pool):
    """Capture `run` (after one warm-up on a side stream) into a CUDA graph in `pool`;
    returns (replay, pool)."""
    side = torch.cuda.Stream()
    side.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(side):  # warm-up (writes the same cache column the replay will)
        run()
    torch.cuda.current_stream().wait_stream(side)
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph, pool=pool):
        run()
    return graph.replay, graph.pool()


def capture_eager(run: Callable[[], None], pool):
    """The capture contract without CUDA: replaying runs the step again (CPU tests)."""
    return run, pool


class GraphEntry(NamedTuple):
    """A captured step: `replay()` runs it on `inputs` (its static input buffers) into `out`;
    `run` is the captured callable, held so that what it reads stays allocated."""

    replay: Callable[[], None]
    inputs: tuple[torch.Tensor, ...]
    out: torch.Tensor
    run: Callable[[], None]


class GraphCache:
    """LRU of replayable decode steps keyed by shape, plus the one shared logits buffer.

    `max_graphs`: the most graphs kept; None (default) = the key space reserved by the calls
    of the current workspace (`reserve`), so nothing a call can need again is evicted.
    `graphs_alive` and `buffers_alive` report what is held; `captures` / `hits` count
    lookups that captured / replayed; `evictions` graphs dropped for the bound; `resets`
    invalidations (new workspace).
    """

    def __init__(self, max_graphs: int | None = None, capture=capture_cuda_graph) -> None:
        if max_graphs is not None and max_graphs < 1:
            raise ValueError(f"max_graphs must be >= 1 (or None: sized from the key space), "
                             f"got {max_graphs!r}")
        self.max_graphs = max_graphs
        self.capture = capture
        self.graphs: OrderedDict[Hashable, GraphEntry] = OrderedDict()
        self.logits: torch.Tensor | None = None
        self.pool = None
        self.epoch: Hashable = None
        self.reserved: dict[Hashable, int] = {}  # kind of call -> its key space (this epoch)
        self.captures = self.hits = self.resets = self.evictions = 0

    @property
    def graphs_alive(self) -> int:
        return len(self.graphs)

    @property
    def buffers_alive(self) -> int:
        return 0 if self.logits is None else 1

    @property
    def bound(self) -> int:
        """The most graphs kept now: `max_graphs`, else the reserved key spaces (at least 1)."""
        if self.max_graphs is not None:
            return self.max_graphs
        return max(1, sum(self.reserved.values()))

    def reserve(self, kind: Hashable, keys: int) -> None:
        """Make room for the `keys` keys that calls of `kind` can visit (`key_space`)."""
        self.reserved[kind] = max(self.reserved.get(kind, 0), int(keys))

    def reset(self, epoch: Hashable) -> None:
        """Drop every graph, the logits buffer and the reservations unless `epoch` (the
        workspace identity) is the one the graphs were captured against."""
        if epoch == self.epoch:
            return
        if self.graphs or self.logits is not None:
            self.resets += 1
        self.graphs.clear()
        self.reserved.clear()
        self.logits, self.pool, self.epoch = None, None, epoch

    def logits_view(self, rows: int, vocab: int, capacity: int, device, dtype) -> torch.Tensor:
        """(rows, vocab) view of the shared buffer, allocated once at `capacity` rows."""
        if self.logits is None:
            self.logits = torch.empty((capacity, vocab), dtype=dtype, device=device)
        if rows > self.logits.shape[0] or vocab != self.logits.shape[1]:
            raise ValueError(
                f"logits buffer {tuple(self.logits.shape)} cannot hold ({rows}, {vocab}): "
                f"reset the cache for a larger workspace"
            )
        return self.logits[:rows]

    def get(self, key: Hashable, make: Callable[[], tuple]) -> GraphEntry:
        """The entry under `key`; `make()` -> (run, inputs, out) is captured on a miss. The
        entry keeps `run` (and so every tensor the step reads) alive with the graph."""
        entry = self.graphs.get(key)
        if entry is not None:
            self.hits += 1
            self.graphs.move_to_end(key)
            return entry
        run, inputs, out = make()
        replay, self.pool = self.capture(run, self.pool)
        self.captures += 1
        self.graphs[key] = GraphEntry(replay, inputs, out, run)
        while len(self.graphs) > self.bound:
            self.graphs.popitem(last=False)
            self.evictions += 1
        return self.graphs[key]

    def clear(self) -> None:
        """Drop every graph and the logits buffer (e.g. before freeing the workspace)."""
        self.reset(object())

    def sibling(self) -> GraphCache:
        """An empty cache with this one's bound and capture function (another workspace)."""
        return GraphCache(self.max_graphs, capture=self.capture)


def segment_sizes(rows: int) -> int:
    """How many sizes a model's segment of `rows` rows can take in a decode loop: compaction
    (`decode_state.compaction`) shrinks it to min(next power of two of its live rows, its
    size), so it is `rows` itself, a power of two below it, or 0 (all its rows finished)."""
    return (rows - 1).bit_length() + 2 if rows > 0 else 1


def key_space(group_rows: Sequence[int], spans: int) -> int:
    """Keys a decode loop with `group_rows` rows per model can visit: every layout of the
    segments (the product of `segment_sizes`, less the one where every row finished) times
    `spans` attended cache prefixes (the batch size follows from the layout).

    >>> key_space([24, 8], 56)  # the paper's loop: 24 policy + 8 momentum rows, 3,584 / 64
    1904
    """
    layouts = math.prod(segment_sizes(r) for r in group_rows) - 1
    return max(1, layouts) * max(1, spans)


def plan_fingerprint(plans) -> tuple:
    """(address, dtype, shape) of every tensor the step reads from the models: parameters,
    buffers and the plans' derived tensors (see the module docstring)."""
    return tuple(
        (tensor_key(plan.model.parameters()), tensor_key(plan.model.buffers()),
         tensor_key(plan.derived_tensors()))
        for plan in plans
    )


@dataclass
class Workspace:
    """Static KV caches (layers x (rows, kv_heads, length, D)) and rope tables (length, D),
    rounded-up capacity, reused by every call whose (rows, length) fit."""

    k: list[torch.Tensor]
    v: list[torch.Tensor]
    cos: torch.Tensor
    sin: torch.Tensor

    @property
    def rows(self) -> int:
        return self.k[0].shape[0]

    @property
    def length(self) -> int:
        return self.k[0].shape[2]

    @property
    def nbytes(self) -> int:
        """Bytes of the K and V caches."""
        return sum(t.numel() * t.element_size() for t in (*self.k, *self.v))

    @classmethod
    def allocate(cls, shape: tuple[int, int, int, int], layers: int, dtype: torch.dtype,
                 device: torch.device, rope: Callable) -> Workspace:
        """Zeroed caches of `shape` (rows, kv_heads, length, D) per layer; `rope(length,
        dtype, device)` -> (cos, sin) tables."""
        k = [torch.zeros(shape, dtype=dtype, device=device) for _ in range(layers)]
        v = [torch.zeros(shape, dtype=dtype, device=device) for _ in range(layers)]
        return cls(k, v, *rope(shape[2], dtype, device))

    def fits(self, rows: int, length: int, dtype: torch.dtype, device: torch.device,
             layers: int) -> bool:
        k = self.k[0]
        return (rows <= self.rows and length <= self.length and k.dtype == dtype
                and k.device == device and len(self.k) == layers)

    def views(self, rows: int, length: int):
        """(k caches, v caches, cos, sin) for a call of `rows` rows and `length` positions."""
        k = [c[:rows, :, :length] for c in self.k]
        v = [c[:rows, :, :length] for c in self.v]
        return k, v, self.cos[:length], self.sin[:length]


class GraphedStep:
    """Replays the static decode step from the engine's `GraphCache`, capturing lazily.

    `fn(layout, tok, pos_ids, key_valid, col, cos_tab, sin_tab, k_caches, v_caches)`; the
    key is (models' fingerprint, layout key, batch, attended cache columns). Inputs are
    copied into the graph's static buffers before each replay; the returned logits are a
    view of the cache's shared buffer, overwritten by the next replay. On a capture error:
    warn once and run the step eagerly from then on.
    """

    def __init__(
        self,
        fn: Callable,
        layout_key: Callable[[object], Hashable],
        cache: GraphCache,
        *,
        fingerprint: Hashable,
        capacity: int,
        vocab: int,
    ) -> None:
        self.fn = fn
        self.layout_key = layout_key
        self.cache = cache
        self.fingerprint = fingerprint
        self.capacity = capacity  # rows of the shared logits buffer
        self.vocab = vocab
        self.failed = False

    def __call__(self, layout, tok, pos_ids, key_valid, col, cos_tab, sin_tab, k_caches, v_caches):
        args = (cos_tab, sin_tab, k_caches, v_caches)
        if self.failed:
            return self.fn(layout, tok, pos_ids, key_valid, col, *args)
        b = tok.shape[0]
        key = (self.fingerprint, self.layout_key(layout), b, key_valid.shape[1])
        dynamic = (tok, pos_ids, key_valid, col)

        def make():
            inputs = tuple(t.clone() for t in dynamic)
            out = self.cache.logits_view(b, self.vocab, self.capacity, tok.device, torch.float32)

            def run() -> None:
                out.copy_(self.fn(layout, *inputs, *args))

            return run, inputs, out

        try:
            with _on_device(tok.device):  # capture on the tensors' device, not the current one
                replay, inputs, out, _ = self.cache.get(key, make)
        except RuntimeError as err:  # capture unsupported here: stay correct, go eager
            warnings.warn(f"CUDA graph capture failed ({err}); decoding eagerly", stacklevel=2)
            self.failed = True
            if tok.is_cuda:
                torch.cuda.synchronize(tok.device)
            return self.fn(layout, tok, pos_ids, key_valid, col, *args)
        for buf, value in zip(inputs, dynamic, strict=True):
            buf.copy_(value)
        with _on_device(tok.device):
            replay()
        return out
