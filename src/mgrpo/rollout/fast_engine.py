"""`fast` engine: our own prefill + decode loop over the live weights of a HF Llama/Qwen model.

What it does (vs the `hf` reference: `model.generate` + a second scoring pass):
- Prefill each distinct prompt ONCE (batched, left-padded), then copy its K/V into the
  rows of its n samples in a preallocated static KV cache (layers x (R, kv_heads, L, D)).
  All rows share one write column per step (left-padded layout), so a step is one
  uniform cache write + one SDPA call per layer; GQA is handled by folding the query
  heads of each KV head into the query-length axis (no K/V repetition at decode).
- Samples on device (temperature, top-k, top-p; inverse-CDF sampling with a seeded
  `torch.Generator`, `rollout.sampling`), with no host sync per token: finished-ness is read back only
  every `check_every` steps, when finished rows are compacted out of the batch (their
  cache rows are squeezed into the front of the static buffers), so they stop costing compute.
- Returns log p(token) and the entropy of softmax(logits / T) straight from the decode
  logits: no second scoring pass. Greedy (T = 0) reports softmax(logits) (T = 1), like `hf`.
- Reads the HF modules' parameters at call time (`rollout.decoder`: `F.linear` /
  `F.rms_norm` on the raw weights of plain Linear / RMSNorm modules, the modules themselves
  otherwise; only rotary + attention + cache are reimplemented), so in-place weight updates
  are seen with no reload. `fuse_weights=True` concatenates the q/k/v and gate/up weights
  (2 matmuls per layer instead of 5; a copy kept with the engine, rewritten in place at the
  start of every call); the default (None) does so only on CPU
  for models whose copied weights are small (`decoder.FUSE_AUTO_MAX_ENTRIES`), where a decode step
  costs its number of kernels (-5% decode time on the tiny model), not its FLOPs.
- Several models in one loop (`generate_joint`): M-GRPO samples from the policy and the
  momentum model; their rows share one batch, one cache, one attention call and one sampler
  per step, and only the weight-touching parts of a layer run per model (a decode step of
  a small model costs about the same whatever its batch, so two loops cost twice one).
- On CUDA: weights stay in their dtype (bf16 as given). `cuda_graph` (default: on for
  CUDA, never on CPU) captures the decode step in one CUDA graph per (models, batch size,
  attended span) and replays it (the graph records the live parameter addresses, so
  in-place updates are still seen); the KV workspace and the graphs outlive a call
  (`keep_workspace`, default on with graphs), so later calls of the same shapes replay
  instead of capturing; all graphs write one shared logits buffer and the cache keeps as
  many graphs as its calls' key space (`rollout.cuda_graph`, docs/memory.md); inside
  `keeping_workspace()` (validation) the kept workspace never grows and keeps its graphs
  (`rollout.workspace`); `compile=True` additionally wraps the step in
  torch.compile (off by default: every new batch bucket recompiles). Both use the static
  form of the step: attention over a cache prefix rounded up to `attn_bucket` columns
  (the whole cache when compiled) with an additive mask, the write column as a device
  tensor, compaction to power-of-two batch buckets. If capture fails, the engine warns
  once and continues eagerly.
- Throughput against HF `generate` and the `hf` engine: docs/performance.md
  (`benchmarks/rollout.py`).
What it does not do: sliding-window / hybrid attention, logit soft-capping, "dynamic" rope
(the rope table is built with the KV workspace from the model's `rotary_emb`), sharded models,
sampling inside the CUDA graph (the sampler runs eagerly on device after each replay).
- Memory-aware: a call whose KV cache + sampler + prefill exceed the budget
  (`kv_cache_gb`, else 80% of free CUDA memory) runs as several loops over consecutive
  prompts (`rollout.memory`); a call that fits is one loop, as without a budget.
Unsupported models fall back to `hf` (see `registry.make_engine`).
"""

from __future__ import annotations

import contextlib
import dataclasses
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from mgrpo.rollout.base import ENGINES, RolloutEngine
from mgrpo.rollout.batch import RolloutBatch, finalize_batch
from mgrpo.rollout.cuda_graph import GraphCache, GraphedStep, key_space, plan_fingerprint
from mgrpo.rollout.decode_state import DecodeOutputs, additive_mask, compaction, prefill_rows
from mgrpo.rollout.decoder import (
    PlanCache,
    Segment,
    by_segment,
    embed,
    fuse_by_default,
    logits_of,
    post_attention,
    pre_attention,
    rotate_half,
    unsupported_reason,
)
from mgrpo.rollout.hf_engine import left_pad
from mgrpo.rollout.memory import budget_bytes, plan_prompts
from mgrpo.rollout.params import SamplingParams
from mgrpo.rollout.sampling import sample_tokens
from mgrpo.rollout.workspace import Workspaces
from mgrpo.seeds import chunk_seed

DEFAULT_CHECK_EVERY = 8  # decode steps between host reads of the finished flags
DEFAULT_COMPACT_RATIO = 0.75  # compact when active rows <= ratio * current batch
DEFAULT_ATTN_BUCKET = 64  # static step: attend over the cache prefix rounded up to this
# config fields two models must share to decode in one loop (same cache and rotary layout)
JOINT_CONFIG_KEYS = (
    "model_type", "hidden_size", "num_hidden_layers", "num_attention_heads",
    "num_key_value_heads", "head_dim", "rope_theta", "rope_scaling", "rope_parameters",
    "max_position_embeddings",
)  # fmt: skip


def _segment_sizes(segments: list[Segment]) -> tuple[int, ...]:
    return tuple(s.stop - s.start for s in segments)


@ENGINES.register("fast")
class FastEngine(RolloutEngine):
    name = "fast"

    def __init__(
        self,
        model: nn.Module,
        *,
        pad_token_id: int,
        compile: bool = False,
        compile_mode: str | None = None,
        cuda_graph: bool | None = None,
        attn_bucket: int | None = None,
        check_every: int = DEFAULT_CHECK_EVERY,
        compact_ratio: float = DEFAULT_COMPACT_RATIO,
        fuse_weights: bool | None = None,
        kv_cache_gb: float | None = None,
        keep_workspace: bool | None = None,
        max_graphs: int | None = None,
        **score_options,
    ) -> None:
        super().__init__(model, pad_token_id=pad_token_id, **score_options)
        reason = unsupported_reason(model)
        if reason is not None:
            raise ValueError(f"fast engine cannot run this model: {reason}")
        if check_every < 1:
            raise ValueError(f"check_every must be >= 1, got {check_every!r}")
        if not 0 < compact_ratio <= 1:
            raise ValueError(f"compact_ratio must be in (0, 1], got {compact_ratio!r}")
        self.check_every = check_every
        self.compact_ratio = compact_ratio
        if kv_cache_gb is not None:
            budget_bytes(kv_cache_gb, self.device)  # reject a bad budget at construction
        self.kv_cache_gb = kv_cache_gb
        on_cuda = self.device.type == "cuda"
        self.cuda_graph = on_cuda if cuda_graph is None else bool(cuda_graph) and on_cuda
        # fused q/k/v and gate/up copies: 3 fewer matmuls per layer (decoder.fuse_by_default)
        self.fuse_weights = bool(fuse_by_default(model, on_cuda) if fuse_weights is None
                                 else fuse_weights)
        self.static = bool(compile) or self.cuda_graph
        # CUDA graphs: a graph cache sized from its key space and a static KV workspace, kept
        # across calls (graphs replayed by later calls of the same shapes) unless
        # keep_workspace=False (`rollout.workspace`)
        self.workspaces = Workspaces(GraphCache(max_graphs) if self.cuda_graph else None,
                                     None if keep_workspace is None else bool(keep_workspace))
        self._plans = PlanCache()  # the decoder plan, built once per set of parameter tensors
        # graphs are cheap per shape, recompiles are not: compiled steps span the whole cache
        self.attn_bucket = attn_bucket or (0 if compile else DEFAULT_ATTN_BUCKET)
        if self.attn_bucket < 0:
            raise ValueError(f"attn_bucket must be >= 0 (0 = whole cache), got {attn_bucket!r}")
        self._step = self._decode_step
        if compile:
            self._step = torch.compile(self._decode_step, mode=compile_mode, dynamic=False)
        cfg = model.config
        self.num_heads = cfg.num_attention_heads
        self.num_kv_heads = getattr(cfg, "num_key_value_heads", None) or self.num_heads
        self.head_dim = getattr(cfg, "head_dim", None) or cfg.hidden_size // self.num_heads

    # ---- model pieces -------------------------------------------------------------------
    @property
    def trunk(self) -> nn.Module:
        return self.model.base_model

    def _rope_tables(self, length: int, dtype: torch.dtype, device: torch.device):
        """cos, sin (length, D) from the model's own rotary module (handles rope scaling)."""
        pos = torch.arange(length, device=device)[None]
        cos, sin = self.trunk.rotary_emb(torch.empty(0, dtype=dtype, device=device), pos)
        return cos[0], sin[0]

    def _layer(self, segments, index, x, cos, sin, k_cache, v_cache, col, mask):
        """Decoder layer `index` over x writing K/V at cache columns [col, col + S).

        x is (B, S, H) in prefill and (B, H) in decode (S = 1; 2-D activations make the
        weight matmuls plain `mm`s). Rows are grouped by model in `segments`; cos/sin
        (B, S, D); mask (B, 1, S, L) additive over the first L cache columns. With `col` a
        tensor (static mode) S must be 1 and attention spans all columns of the given cache
        views (a bucketed prefix).
        """
        b, s = x.shape[0], (x.shape[1] if x.dim() == 3 else 1)
        nh, kvh, d = self.num_heads, self.num_kv_heads, self.head_dim
        qkv = by_segment(segments, lambda p, h: pre_attention(p, index, h), x)
        qkv = qkv.view(b, s, nh + 2 * kvh, d)  # (B, S, nh + 2 kvh, D)
        qk, v = qkv[:, :, : nh + kvh], qkv[:, :, nh + kvh :]
        c, sn = cos[:, :, None], sin[:, :, None]  # (B, S, 1, D)
        qk = (qk * c + rotate_half(qk) * sn).transpose(1, 2)  # (B, nh + kvh, S, D)
        q, k, v = qk[:, :nh], qk[:, nh:], v.transpose(1, 2)
        if isinstance(col, torch.Tensor):
            k_cache.index_copy_(2, col, k)
            v_cache.index_copy_(2, col, v)
            keys, vals = k_cache, v_cache
        else:
            k_cache[:, :, col : col + s] = k
            v_cache[:, :, col : col + s] = v
            keys, vals = k_cache[:, :, : col + s], v_cache[:, :, : col + s]
        scale = segments[0].plan.layers[index].scale
        if s == 1:  # decode: fold each KV head's query heads into the query axis (GQA)
            out = F.scaled_dot_product_attention(
                q.reshape(b, kvh, nh // kvh, d), keys, vals, attn_mask=mask, scale=scale
            )  # (B, kvh, g, D)
            out = out.reshape(b, nh * d) if x.dim() == 2 else out.reshape(b, 1, nh * d)
        else:
            rep = nh // kvh
            keys = keys.repeat_interleave(rep, dim=1)
            vals = vals.repeat_interleave(rep, dim=1)
            out = F.scaled_dot_product_attention(q, keys, vals, attn_mask=mask, scale=scale)
            out = out.transpose(1, 2).reshape(b, s, nh * d)
        return by_segment(segments, lambda p, xs, o: post_attention(p, index, xs, o), x, out)

    def _decode_step(
        self, segments, tok, pos_ids, key_mask, col, cos_tab, sin_tab, k_caches, v_caches
    ):
        """Logits (B, V) for the next token after `tok` (B,) written at cache column `col`.

        Static mode (`col` a device tensor): `key_mask` is the boolean key validity (B, L) and
        the additive mask is built in the step (it must live inside the CUDA graph). Eager
        mode: `key_mask` is already additive (B, L) in the compute dtype; its first col + 1
        columns are used (a view: no per-step mask kernels).
        """
        x = by_segment(segments, embed, tok)  # (B, H)
        cos, sin = cos_tab[pos_ids][:, None], sin_tab[pos_ids][:, None]  # (B, 1, D)
        if isinstance(col, torch.Tensor):
            cols = torch.arange(key_mask.shape[1], device=key_mask.device)
            mask = additive_mask(key_mask & (cols <= col), x.dtype)[:, None, None, :]  # (B, 1, 1, L)
        else:
            mask = key_mask[:, None, None, : col + 1]
        for index, (kc, vc) in enumerate(zip(k_caches, v_caches, strict=True)):
            x = self._layer(segments, index, x, cos, sin, kc, vc, col, mask)
        return by_segment(segments, logits_of, x)

    # ---- generation -------------------------------------------------------------------
    def generate(
        self, prompt_token_ids: Sequence[Sequence[int]], n: int, params: SamplingParams
    ) -> RolloutBatch:
        prompts = self._check_call(prompt_token_ids, n, params)
        return self._run_split(prompts, [(self, n)], params)[0]

    def generate_joint(
        self,
        prompt_token_ids: Sequence[Sequence[int]],
        groups: Sequence[tuple[FastEngine, int, SamplingParams]],
    ) -> list[RolloutBatch]:
        """`engine.generate(prompts, n, params)` for every (engine, n, params) group, decoded
        in ONE loop (shared batch, cache, attention and sampler; weights per model).

        Every group's engine must be a `FastEngine` over a model of the same architecture
        shape on the same device, and every `params` must agree except for `seed`. The
        samples are a deterministic function of the first group's seed (they are not the
        ones separate calls would draw; greedy decoding gives identical tokens).
        Returns one `RolloutBatch` per group, in order.
        """
        if not groups:
            raise ValueError("groups must name at least one (engine, n, params)")
        first = groups[0][2]
        prompts = None
        for i, (engine, n, params) in enumerate(groups):
            if not isinstance(engine, FastEngine):
                raise ValueError(
                    f"groups[{i}]: engine must be a FastEngine, got {type(engine).__name__}"
                )
            prompts = engine._check_call(prompt_token_ids, n, params)
            problem = self.joint_mismatch(engine, params, first)
            if problem:
                raise ValueError(
                    f"groups[{i}] cannot share a decode loop with groups[0]: {problem}"
                )
        return self._run_split(prompts, [(engine, n) for engine, n, _ in groups], first)

    def joint_mismatch(
        self, other: FastEngine, params: SamplingParams, first: SamplingParams
    ) -> str | None:
        """Why `other` (sampling with `params`) cannot share this engine's decode loop, whose
        first group samples with `first`; None when it can (same device, dtype, shape and
        sampling)."""
        if other.device != self.device:
            return f"device {other.device} != {self.device}"
        if other.trunk.embed_tokens.weight.dtype != self.trunk.embed_tokens.weight.dtype:
            return "different weight dtypes"
        for key in JOINT_CONFIG_KEYS:
            a, b = getattr(self.model.config, key, None), getattr(other.model.config, key, None)
            if a != b:
                return f"config.{key} differs ({a!r} vs {b!r})"
        for field in ("max_new_tokens", "temperature", "top_p", "top_k"):
            if getattr(params, field) != getattr(first, field):
                return f"params.{field} differs"
        want = self.stop_ids(first)
        if self.stop_ids(params) != want or other.stop_ids(params) != want:
            return "stop token ids differ"
        return None

    @property
    def graphs(self) -> GraphCache | None:
        """The kept workspace's graph cache (None: this engine captures no graphs)."""
        return self.workspaces.graphs

    @graphs.setter
    def graphs(self, cache: GraphCache | None) -> None:
        self.workspaces.graphs = cache

    @property
    def _workspace(self):
        """The kept KV workspace (`rollout.workspace`), None when nothing is kept."""
        return self.workspaces.kept

    @property
    def keep_workspace(self) -> bool:
        """Whether the KV workspace and the graphs outlive a call. Default (None): whenever
        the engine captures graphs, so repeated shapes (every training step, every eval
        batch) replay graphs instead of capturing again (a capture costs a device sync, an
        `empty_cache` and a warm-up run); the price is the workspace's KV cache held between
        calls, through the training backward too (docs/memory.md counts it)."""
        return self.workspaces.keep

    @keep_workspace.setter
    def keep_workspace(self, keep: bool | None) -> None:
        self.workspaces.keep_setting = None if keep is None else bool(keep)

    def keeping_workspace(self) -> contextlib.AbstractContextManager:
        """Within the block, keep workspaces and graphs between calls; the kept workspace is
        never grown or replaced (calls it cannot hold use a side workspace freed at exit),
        and one allocated in a block entered without one is freed at exit
        (`rollout.workspace.Workspaces.scope`)."""
        return self.workspaces.scope()

    def release_workspace(self) -> None:
        """Free the static KV workspace and every captured graph (they record its addresses)."""
        self.workspaces.release()

    def plan_chunks(self, prompts: list[list[int]], counts: list[int], new: int) -> int:
        """Prompts per decode loop under the memory budget (`rollout.memory.plan_prompts`),
        and inside `keeping_workspace()` at most what the kept workspace holds."""
        dtype = self.trunk.embed_tokens.weight.dtype
        length = max(map(len, prompts)) + new
        cap, held = self.workspaces.loop_cap(sum(counts), length, dtype, self.device,
                                             self.model.config.num_hidden_layers)
        per = plan_prompts(self.model.config, dtype, self.device, self.kv_cache_gb, prompts,
                           counts, new, held)
        return per if cap is None else min(per, cap)

    def _run_split(
        self, prompts: list[list[int]], groups: list[tuple[FastEngine, int]], params: SamplingParams
    ) -> list[RolloutBatch]:
        """`_run` over chunks of prompts that fit the memory budget; chunk c samples with
        `chunk_seed(seed, c)` (chunk 0: the call's own seed, so one chunk = one plain loop)."""
        counts = [n for _, n in groups]
        per = self.plan_chunks(prompts, counts, params.max_new_tokens)
        chunks = [prompts[i : i + per] for i in range(0, len(prompts), per)]
        try:
            results = [
                self._run(
                    chunk, groups, dataclasses.replace(params, seed=chunk_seed(params.seed, c))
                )
                for c, chunk in enumerate(chunks)
            ]
        finally:
            self.workspaces.after_call()
        sizes = [len(c) for c in chunks]
        return [
            RolloutBatch.cat([r[g] for r in results], sizes, self.pad_token_id)
            for g in range(len(groups))
        ]

    @torch.no_grad()
    def _run(
        self, prompts: list[list[int]], groups: list[tuple[FastEngine, int]], params: SamplingParams
    ) -> list[RolloutBatch]:
        """Prefill + decode for every (engine, n) group; rows are group-major, then
        prompt-major within a group."""
        device = self.device
        dtype = self.trunk.embed_tokens.weight.dtype
        plans = [engine._plans.get(engine.model, fuse=engine.fuse_weights) for engine, _ in groups]
        counts = [n for _, n in groups]
        num_prompts, new = len(prompts), params.max_new_tokens
        r = num_prompts * sum(counts)
        ids, attn = left_pad(prompts, self.pad_token_id, device)  # (P, Lp)
        lp = ids.shape[1]
        length = lp + new
        # k/v caches: layers x (R, kv_heads, L, D); cos/sin (L, D)
        ws, graphs = self.workspaces.slot(r, sum(counts), length, dtype, device,
                                          len(plans[0].layers), self.num_kv_heads,
                                          self.head_dim, self._rope_tables)
        k_caches, v_caches, cos_tab, sin_tab = ws.views(r, length)
        expand = prefill_rows(counts, num_prompts).to(device)  # (R,) row in G*P prefill rows
        row_prompt = expand % num_prompts  # (R,) prompt of each rollout row
        logits = self._prefill(plans, expand, ids, attn, cos_tab, sin_tab, k_caches, v_caches)

        starts = [num_prompts * sum(counts[:g]) for g in range(len(groups) + 1)]
        segments = [Segment(p, starts[g], starts[g + 1]) for g, p in enumerate(plans)]
        seg_id = torch.repeat_interleave(
            torch.arange(len(groups), device=device),
            torch.tensor(counts, device=device) * num_prompts,
        )  # (R,) which group each live row belongs to
        key_valid = torch.ones((r, length), dtype=torch.bool, device=device)
        key_valid[:, :lp] = attn.bool()[row_prompt]
        pos_ids = attn.sum(1)[row_prompt]  # (R,) next position id
        stop_t = torch.tensor(self.stop_ids(params), dtype=torch.long, device=device)
        out = DecodeOutputs(r, new, self.pad_token_id, device)
        rows = torch.arange(r, device=device)  # original row of each live batch row
        # eager mode: the additive key mask (B, L), rebuilt only when rows are compacted
        key_mask = None if self.static else additive_mask(key_valid, dtype)
        done = torch.zeros(r, dtype=torch.bool, device=device)
        gen = torch.Generator(device=device)
        gen.manual_seed(params.seed)
        kv_views = (k_caches, v_caches)
        step_fn = self._step
        if graphs is not None:
            fingerprint = plan_fingerprint(plans)
            spans = -(-ws.length // self.attn_bucket) if self.attn_bucket else ws.length
            graphs.reserve((fingerprint, tuple(n * num_prompts for n in counts)),
                           key_space([n * num_prompts for n in counts], spans))
            step_fn = GraphedStep(
                self._step,
                _segment_sizes,
                graphs,
                fingerprint=fingerprint,
                capacity=ws.rows,
                vocab=self.model.get_output_embeddings().weight.shape[0],
            )
        col_t = torch.full((1,), lp, dtype=torch.long, device=device)  # static-mode column
        views_key, span_views = None, kv_views
        for step in range(new):
            tok, tok_lp, tok_ent = sample_tokens(logits, params, gen)
            out.add(tok, tok_lp, tok_ent, ~done)
            done = done | torch.isin(tok, stop_t)  # a finished row stays finished
            if step == new - 1:
                break
            if (step + 1) % self.check_every == 0:
                out.flush(rows)  # before `rows` can change
                live = torch.bincount(seg_id[~done], minlength=len(groups)).tolist()  # host sync
                if sum(live) == 0:
                    break
                compacted = compaction(segments, plans, done, live, self._bucket,
                                       self.compact_ratio)
                if compacted is not None:
                    keep, segments = compacted
                    rows, done, tok, pos_ids, key_valid, seg_id = (
                        t[keep] for t in (rows, done, tok, pos_ids, key_valid, seg_id)
                    )
                    key_mask = None if self.static else key_mask[keep]
                    kv_views = tuple(
                        [
                            buf[: keep.shape[0]].copy_(view.index_select(0, keep))
                            for buf, view in zip(bufs, views, strict=True)
                        ]
                        for bufs, views in zip((k_caches, v_caches), kv_views, strict=True)
                    )
            if self.static:  # attend over a bucketed cache prefix (static shapes per bucket)
                span = length
                if self.attn_bucket:
                    span = min(length, -(-(lp + step + 1) // self.attn_bucket) * self.attn_bucket)
                if views_key != (span, rows.shape[0]):
                    views_key = (span, rows.shape[0])
                    span_views = [[c[:, :, :span] for c in caches] for caches in kv_views]
                logits = step_fn(
                    segments,
                    tok,
                    pos_ids,
                    key_valid[:, :span],
                    col_t,
                    cos_tab,
                    sin_tab,
                    *span_views,
                )
            else:
                logits = step_fn(
                    segments, tok, pos_ids, key_mask, lp + step, cos_tab, sin_tab, *kv_views
                )
            pos_ids = pos_ids + 1
            col_t += 1
        out.flush(rows)
        return [
            finalize_batch(
                *(t[starts[g] : starts[g + 1]] for t in (out.tok, out.lp, out.ent, out.mask)),
                stop_ids=stop_t,
                n=n,
                num_prompts=num_prompts,
                pad_token_id=self.pad_token_id,
            )
            for g, n in enumerate(counts)
        ]

    def _prefill(self, plans, expand, ids, attn, cos_tab, sin_tab, k_caches, v_caches):
        """Run every model over the P distinct prompts once (rows: G * P, model-major) and copy
        each prompt's K/V into the cache rows of its samples (`expand` (R,): the prefill row of
        each rollout row). Returns the first logits (R, V)."""
        num_prompts, lp = ids.shape
        groups = len(plans)
        device = ids.device
        valid = attn.bool().repeat(groups, 1)  # (G*P, Lp)
        pos = (attn.cumsum(1) - 1).clamp(min=0).repeat(groups, 1)  # (G*P, Lp)
        causal = torch.ones(lp, lp, dtype=torch.bool, device=device).tril()
        eye = torch.eye(lp, dtype=torch.bool, device=device)
        # pad queries attend to themselves only, so no row is fully masked (no NaN)
        allowed = ((causal & valid[:, None, :]) | eye)[:, None]  # (G*P, 1, Lp, Lp)
        dtype = k_caches[0].dtype
        mask = torch.zeros(allowed.shape, dtype=dtype, device=device).masked_fill_(
            ~allowed, float("-inf")
        )
        segments = [Segment(p, g * num_prompts, (g + 1) * num_prompts) for g, p in enumerate(plans)]
        x = by_segment(segments, embed, ids.repeat(groups, 1))  # (G*P, Lp, H)
        pk_shape = (groups * num_prompts, self.num_kv_heads, lp, self.head_dim)
        for index, (kc, vc) in enumerate(zip(k_caches, v_caches, strict=True)):
            pk = torch.empty(pk_shape, dtype=dtype, device=device)
            pv = torch.empty(pk_shape, dtype=dtype, device=device)
            x = self._layer(segments, index, x, cos_tab[pos], sin_tab[pos], pk, pv, 0, mask)
            kc[:, :, :lp] = pk.index_select(0, expand)
            vc[:, :, :lp] = pv.index_select(0, expand)
        return by_segment(segments, logits_of, x[:, -1]).index_select(0, expand)  # (R, V)

    def _bucket(self, n_active: int) -> int:
        """Batch size after compaction: exact in eager mode, next power of two when static."""
        if not self.static:
            return n_active
        return 1 << (n_active - 1).bit_length()
