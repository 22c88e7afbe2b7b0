"""CUDA-graph replay of the `fast` engine's static decode step."""

from __future__ import annotations

import warnings
from collections.abc import Callable, Hashable

import torch


class GraphedStep:
    """Replays the static decode step from CUDA graphs, one per shape key, lazily captured.

    `fn(layout, tok, pos_ids, key_valid, col, cos_tab, sin_tab, k_caches, v_caches)`; the
    graph key is (layout key, batch, attended cache columns). Inputs are copied into the
    graph's static buffers before each replay; the returned logits live in the graph's output
    buffer and are overwritten by the next replay. The KV caches are views of the same static
    buffers on every call, so their addresses are stable. A graph records parameter
    addresses, so an instance must not outlive the `generate` call that made it. On a
    capture error: warn once and run the step eagerly from then on.
    """

    def __init__(self, fn: Callable, layout_key: Callable[[object], Hashable]) -> None:
        self.fn = fn
        self.layout_key = layout_key
        self.graphs: dict[Hashable, tuple] = {}
        self.pool = None
        self.failed = False

    def __call__(self, layout, tok, pos_ids, key_valid, col, cos_tab, sin_tab, k_caches, v_caches):
        args = (cos_tab, sin_tab, k_caches, v_caches)
        if self.failed:
            return self.fn(layout, tok, pos_ids, key_valid, col, *args)
        key = (self.layout_key(layout), tok.shape[0], key_valid.shape[1])
        if key not in self.graphs:
            try:
                # capture on the tensors' device, not whatever device is current
                with torch.cuda.device(tok.device):
                    self.graphs[key] = self._capture(layout, (tok, pos_ids, key_valid, col), args)
            except RuntimeError as err:  # capture unsupported here: stay correct, go eager
                warnings.warn(f"CUDA graph capture failed ({err}); decoding eagerly", stacklevel=2)
                self.failed = True
                torch.cuda.synchronize(tok.device)
                return self.fn(layout, tok, pos_ids, key_valid, col, *args)
        graph, inputs, out = self.graphs[key]
        for buf, value in zip(inputs, (tok, pos_ids, key_valid, col), strict=True):
            buf.copy_(value)
        with torch.cuda.device(tok.device):
            graph.replay()
        return out

    def _capture(self, layout, dynamic: tuple, args: tuple):
        inputs = tuple(t.clone() for t in dynamic)
        side = torch.cuda.Stream()
        side.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(side):  # warm-up (writes the same cache column the replay will)
            self.fn(layout, *inputs, *args)
        torch.cuda.current_stream().wait_stream(side)
        graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(graph, pool=self.pool):
            out = self.fn(layout, *inputs, *args)
        self.pool = graph.pool()
        return graph, inputs, out
