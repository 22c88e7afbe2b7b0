"""Where the `fast` engine's static decode loops get their KV cache and graphs, and how long
these live.

With CUDA graphs (`FastEngine(cuda_graph=True)`) a decode loop runs in a `Workspace` (static
K/V caches + rope tables, `rollout.cuda_graph`) whose addresses its captured graphs record.
`Workspaces` holds:

- the kept workspace and its `GraphCache`: allocated (length rounded up to
  WORKSPACE_LENGTH_ROUND) by the first call, reused by every later call it fits, replaced
  (graphs dropped) by a call it does not fit; with `keep` off it is freed after every call;
- inside `scope()` (the trainer's validation): the kept workspace is frozen. A call whose
  sequences fit its length and whose rows per prompt fit its rows decodes in it, split into
  loops of at most its rows (`loop_cap`; the budget may split further), and adds its graphs
  to its cache, so the training graphs survive and nothing grows. Any other call decodes in
  a side workspace with a cache of its own, kept for the rest of the block and freed at
  exit. A block entered with no kept workspace frees whatever it allocated at exit, so the
  workspace that stays through the training backward is never larger than a training call.

Without graphs every call gets a fresh workspace of its exact size, freed with the call.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import torch

from mgrpo.rollout.cuda_graph import WORKSPACE_LENGTH_ROUND, GraphCache, Workspace


@dataclass
class _Scope:
    """A `Workspaces.scope()` block: the frozen kept workspace (or None) and the side one."""

    base: Workspace | None
    side_graphs: GraphCache | None
    side: Workspace | None = None


class Workspaces:
    """The kept workspace, its graphs and the scoped side workspace (module docstring).

    `graphs` None = the engine captures no graphs (each call a fresh workspace);
    `keep` None = keep the workspace whenever there are graphs."""

    def __init__(self, graphs: GraphCache | None, keep: bool | None) -> None:
        self.graphs = graphs
        self.kept: Workspace | None = None
        self.keep_setting = keep
        self._scope: _Scope | None = None

    @property
    def keep(self) -> bool:
        return self.graphs is not None if self.keep_setting is None else self.keep_setting

    @property
    def held_bytes(self) -> int:
        """Bytes of every workspace held now (kept and side)."""
        side = self._scope.side if self._scope is not None else None
        return sum(ws.nbytes for ws in (self.kept, side) if ws is not None)

    def release(self) -> None:
        """Free every workspace and every captured graph (they record its addresses)."""
        if self.graphs is not None:
            self.graphs.clear()
        self.kept = None
        if self._scope is not None:  # inside a scope: nothing frozen is left either
            self._scope.base = None
            self._release_side()

    def _release_side(self) -> None:
        scope = self._scope
        if scope.side_graphs is not None:
            scope.side_graphs.clear()
        scope.side = None

    @contextlib.contextmanager
    def scope(self) -> Iterator[None]:
        """The block's calls keep what they allocate between them and leave the kept
        workspace as they found it (module docstring). Nested blocks are the outer one."""
        if self._scope is not None:
            yield
            return
        base = self.kept if (self.graphs is not None and self.keep) else None
        side_graphs = self.graphs.sibling() if self.graphs is not None else None
        scope = self._scope = _Scope(base, side_graphs)
        setting, self.keep_setting = self.keep_setting, True
        try:
            yield
        finally:
            self._release_side()
            self._scope, self.keep_setting = None, setting
            if scope.base is None or not self.keep:
                self.release()  # what the block allocated in the kept slot

    def _frozen_base(self, rows_per_prompt: int, length: int, dtype: torch.dtype,
                     device: torch.device, layers: int) -> Workspace | None:
        """The scope's frozen workspace when a call of this shape can decode in it."""
        base = self._scope.base if self._scope is not None else None
        if base is not None and base.fits(rows_per_prompt, length, dtype, device, layers):
            return base
        return None

    def loop_cap(self, rows_per_prompt: int, length: int, dtype: torch.dtype,
                 device: torch.device, layers: int) -> tuple[int | None, int]:
        """(the most prompts one loop of this call may take, None = no cap; the bytes of the
        workspace the call would reuse, which the memory budget counts as available)."""
        base = self._frozen_base(rows_per_prompt, length, dtype, device, layers)
        if base is not None:
            return base.rows // rows_per_prompt, base.nbytes
        if self._scope is not None and self._scope.base is not None:
            side = self._scope.side  # the frozen workspace stays allocated: not available
            return None, side.nbytes if side is not None else 0
        return None, self.kept.nbytes if self.kept is not None else 0

    def slot(self, rows: int, rows_per_prompt: int, length: int, dtype: torch.dtype,
             device: torch.device, layers: int, heads: int, head_dim: int,
             rope: Callable) -> tuple[Workspace, GraphCache | None]:
        """The workspace (and its graph cache) one decode loop of `rows` rows x `length`
        positions runs in, allocating or replacing it as the module docstring says."""
        def allocate(length_cap: int) -> Workspace:
            return Workspace.allocate((rows, heads, length_cap, head_dim), layers, dtype,
                                      device, rope)

        if self.graphs is None:
            return allocate(length), None
        rounded = -(-length // WORKSPACE_LENGTH_ROUND) * WORKSPACE_LENGTH_ROUND
        base = self._frozen_base(rows_per_prompt, length, dtype, device, layers)
        if base is not None and base.fits(rows, length, dtype, device, layers):
            self.graphs.reset(id(base))
            return base, self.graphs
        scope = self._scope
        if scope is not None and scope.base is not None:  # the side workspace
            if scope.side is None or not scope.side.fits(rows, length, dtype, device, layers):
                self._release_side()  # free the old one before allocating the new
                scope.side = allocate(rounded)
            scope.side_graphs.reset(id(scope.side))
            return scope.side, scope.side_graphs
        if self.kept is None or not self.kept.fits(rows, length, dtype, device, layers):
            self.release()
            self.kept = allocate(rounded)
        self.graphs.reset(id(self.kept))
        return self.kept, self.graphs

    def after_call(self) -> None:
        """Free the kept workspace unless it is kept (the scope's side one lives on)."""
        if not self.keep:
            self.release()
