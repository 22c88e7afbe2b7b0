"""Teacher-forced log-probs and entropies of given responses, chunked over tokens.

`score_responses` is used both for rollout scoring (no grad: `logp_old`, `logp_ref`) and
for the training loss (with grad). The transformer trunk runs once to the final hidden
states; the LM head, `log_softmax(logits / T)` and the entropy are then computed by
`ChunkedTokenLogProb` over `chunk_tokens` response tokens at a time, so the full
(R, T, V) fp32 logits never exist. Its backward recomputes each chunk's logits from the
saved hidden states (nothing per chunk is stored for backward), and it produces exactly
the naive gradient: d logp_t / d z = (onehot(y_t) - softmax(z)) / T. A chunk is at most
`chunk_tokens` tokens and at most MAX_CHUNK_LOGITS_BYTES of fp32 logits (large vocabularies).

Sequences are laid out as [left-padded prompt | right-padded response] with an
attention mask and position ids = cumsum(mask) - 1, so a padded batch scores each
sequence as if it were alone (test). Entropies are returned detached.

Two no-grad passes over the same layout serve the rewards: `self_certainty` (Intuitor) and
`mean_hidden_states` (EVOL-RL's default embedding: the trunk only, no LM head).
"""

from __future__ import annotations

import contextlib
import inspect
import math
from collections.abc import Iterator, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from mgrpo.core.entropy import token_entropy

DEFAULT_CHUNK_TOKENS = 1024  # response tokens per LM-head chunk: V * 1024 * 4 bytes of fp32 logits
# ... capped so one chunk's fp32 logits stay under this many bytes (151,936-token Qwen vocab:
# 220 tokens per chunk; a per-chunk step holds ~2 such (c, V) tensors at once)
MAX_CHUNK_LOGITS_BYTES = 128 * 2**20


class ChunkedTokenLogProb(torch.autograd.Function):
    """(logp (N,), entropy (N,)) of `targets` under softmax((hidden @ W.T + b) / T), chunked.

    Forward: per chunk of rows, z = linear(h, W, b).float() / T (the same cast as an HF
    model's `logits.float()`), logp = z[y] - logsumexp(z), H = logsumexp(z) - sum softmax(z) z.
    Backward: recompute z per chunk; dz = g * (onehot(y) - softmax(z)) / T, cast to the
    weight dtype; dh = dz @ W, dW += dz.T @ h, db += sum dz. The products run in the weight
    dtype (bf16 weights: bf16 products, as autocast runs them; the FSDP path computes with
    bf16 weights and no autocast) and dW is accumulated over chunks in fp32: at the peak of
    the backward the head holds a (V, H) fp32 accumulator, one (V, H) product and the (V, H)
    result in the weight dtype (`train.layout.memory_budget.lm_head_grad_bytes`).
    The entropy output is non-differentiable.

    Autocast: what `torch.amp.custom_fwd` / `custom_bwd` do, with the device type read from
    the input (those decorators fix it when the class is defined): the forward records
    whether autocast was on for `hidden`'s device and its dtype, and the backward runs under
    the same autocast state, so under bf16 autocast the backward's recomputed logits and its
    three (c x H x V) matmuls run in bf16 like the forward's, not in fp32 (the backward runs
    outside the caller's autocast block). Without autocast nothing changes.
    """

    @staticmethod
    def forward(ctx, hidden, weight, bias, targets, temperature: float, chunk: int):  # noqa: D401
        device_type = hidden.device.type
        # a device type autocast does not know (e.g. `meta`) has no autocast state to keep
        ctx.amp = ((device_type, torch.is_autocast_enabled(device_type),
                    torch.get_autocast_dtype(device_type))
                   if torch.amp.is_autocast_available(device_type) else None)
        n = hidden.shape[0]
        logp = hidden.new_empty(n, dtype=torch.float32)  # (N,)
        ent = hidden.new_empty(n, dtype=torch.float32)  # (N,)
        for s in range(0, n, chunk):
            z = F.linear(hidden[s : s + chunk], weight, bias).float()  # (c, V)
            if temperature != 1.0:  # in place (z is a fresh tensor): one (c, V) buffer less
                z = z.div_(temperature)
            lse = torch.logsumexp(z, dim=-1)  # (c,)
            logp[s : s + chunk] = z.gather(1, targets[s : s + chunk, None])[:, 0] - lse
            # H = lse - sum_v p z, the sum as a batched dot (no (c, V) product tensor)
            p = torch.softmax(z, dim=-1)  # (c, V)
            ent[s : s + chunk] = lse - torch.einsum("cv,cv->c", p, z)
            del p, z
        ctx.save_for_backward(hidden, weight, bias, targets)
        ctx.temperature, ctx.chunk = temperature, chunk
        ctx.mark_non_differentiable(ent)
        return logp, ent

    @staticmethod
    def backward(ctx, grad_logp, _grad_ent):
        if ctx.amp is None:
            return ChunkedTokenLogProb._backward(ctx, grad_logp)
        device_type, enabled, dtype = ctx.amp
        with torch.autocast(device_type, dtype=dtype, enabled=enabled):
            return ChunkedTokenLogProb._backward(ctx, grad_logp)

    @staticmethod
    def _backward(ctx, grad_logp):
        hidden, weight, bias, targets = ctx.saved_tensors
        autocast = ctx.amp is not None and ctx.amp[1]
        need_h, need_w, need_b = ctx.needs_input_grad[:3]
        t, chunk = ctx.temperature, ctx.chunk
        grad_h = torch.empty_like(hidden) if need_h else None
        grad_w = (
            torch.zeros(weight.shape, dtype=torch.float32, device=weight.device) if need_w else None
        )
        grad_b = (
            torch.zeros(bias.shape, dtype=torch.float32, device=bias.device)
            if need_b and bias is not None
            else None
        )
        for s in range(0, hidden.shape[0], chunk):
            h = hidden[s : s + chunk]  # (c, H)
            g = grad_logp[s : s + chunk].float()  # (c,)
            z = F.linear(h, weight, bias).float()  # (c, V)
            if t != 1.0:
                z = z.div_(t)
            dz = torch.softmax(z, dim=-1).mul_(-g[:, None])  # -g * p
            del z
            dz.scatter_add_(1, targets[s : s + chunk, None], g[:, None])  # + g * onehot
            dz = dz.div_(t).to(weight.dtype)
            if grad_h is not None:
                grad_h[s : s + chunk] = dz @ weight
            if grad_w is not None and autocast:  # out of place: autocast casts the product
                grad_w += dz.t() @ h
            elif grad_w is not None and dz.dtype == torch.float32:  # fp32 weights: fused
                grad_w.addmm_(dz.t(), h.float())  # (the same fp32 op as ever: same bits)
            elif grad_w is not None:  # bf16 weights: a bf16 product, accumulated in fp32
                grad_w.add_(dz.t() @ h.to(dz.dtype))
            if grad_b is not None:
                grad_b += dz.float().sum(0)
        grad_w = grad_w.to(weight.dtype) if grad_w is not None else None
        grad_b = grad_b.to(bias.dtype) if grad_b is not None else None
        return grad_h, grad_w, grad_b, None, None, None


def lm_head_of(model: nn.Module) -> nn.Linear:
    """The model's output projection; only a plain `nn.Linear` head is supported."""
    head = model.get_output_embeddings()
    if not isinstance(head, nn.Linear):
        raise ValueError(
            f"model {type(model).__name__}: score_responses needs an nn.Linear LM head, "
            f"got {type(head).__name__}"
        )
    return head


def build_scoring_inputs(
    prompt_ids: Sequence[Sequence[int]],
    response_ids: torch.Tensor,
    mask: torch.Tensor,
    *,
    pad_token_id: int,
    device: torch.device,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, int]:
    """[left-padded prompt | response] ids, attention mask, position ids, prompt width P.

    Returns input_ids (R, P + T), attention (R, P + T) long, position_ids (R, P + T), P.
    """
    r = len(prompt_ids)
    width = max(len(p) for p in prompt_ids)
    prompt = torch.full((r, width), pad_token_id, dtype=torch.long)
    prompt_mask = torch.zeros((r, width), dtype=torch.long)
    for i, p in enumerate(prompt_ids):
        if len(p):
            prompt[i, width - len(p) :] = torch.as_tensor(list(p), dtype=torch.long)
            prompt_mask[i, width - len(p) :] = 1
    input_ids = torch.cat([prompt.to(device), response_ids.to(device)], dim=1)  # (R, P+T)
    attention = torch.cat([prompt_mask.to(device), mask.to(device).long()], dim=1)  # (R, P+T)
    position_ids = (attention.cumsum(1) - 1).clamp(min=0)  # (R, P+T)
    return input_ids, attention, position_ids, width


def score_responses(
    model: nn.Module,
    prompt_ids: Sequence[Sequence[int]],
    response_ids: torch.Tensor,
    mask: torch.Tensor,
    temperature: float,
    *,
    chunk_tokens: int = DEFAULT_CHUNK_TOKENS,
    with_grad: bool = False,
    pad_token_id: int = 0,
    share_prefix: bool = True,
    entropy_grad: bool = False,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Log-probs (R, T) and entropies (R, T), fp32, of `response_ids` given `prompt_ids`.

    logp[r, t] = log softmax(logits / T)[response_ids[r, t]] with logits predicting that
    token from the prompt and the response prefix; entropy[r, t] = -sum p log p of the same
    distribution. Both are 0 where `mask` is False. `with_grad=True` keeps autograd through
    logp; the entropy is detached unless `entropy_grad=True` (with `with_grad`; the entropy
    bonus), which recomputes it differentiably from the same hidden states, `chunk_tokens`
    tokens at a time, keeping each chunk's (tokens, V) logits for the backward pass;
    otherwise runs under no_grad. The pad id only fills
    masked positions and never influences the result.

    `share_prefix` (default on): when several rows share a prompt (GRPO's G samples of one
    prompt), the trunk runs over each distinct prompt ONCE, its K/V cache is expanded to the
    rows (differentiably: gradients of all rows flow back into the one prompt pass), and only
    the response tokens run per row. Same result as the full per-row forward (tested, values
    and gradients); a no-op when every prompt is distinct or the model returns no cache.
    Skipped with grad when the model is in training mode with gradient checkpointing on:
    transformers turns the cache off there, so the prompt pass would run and be thrown away
    (`cache_off`). A no-grad pass in training mode (the trainer's `logp_old`) runs with the
    checkpointing flags off (`checkpointing_paused`): without grad there is nothing to
    recompute, so the forward is the same, and transformers releases before 5.2x (whose
    trunk drops the cache under the flag whether or not grad is on) keep the cache too.
    """
    if not temperature > 0:
        raise ValueError(f"temperature must be > 0 for scoring, got {temperature!r}")
    if chunk_tokens < 1:
        raise ValueError(f"chunk_tokens must be >= 1, got {chunk_tokens!r}")
    if response_ids.dim() != 2 or mask.shape != response_ids.shape:
        raise ValueError(
            f"response_ids (R, T) and mask must have the same 2-D shape, got "
            f"{tuple(response_ids.shape)} and {tuple(mask.shape)}"
        )
    r, t = response_ids.shape
    if len(prompt_ids) != r:
        raise ValueError(f"prompt_ids has {len(prompt_ids)} entries but response_ids has {r} rows")
    if any(len(p) == 0 for p in prompt_ids):
        raise ValueError("prompt_ids entries must be non-empty")
    head = lm_head_of(model)
    device = head.weight.device
    chunk_tokens = min(int(chunk_tokens), max(1, MAX_CHUNK_LOGITS_BYTES // (4 * head.out_features)))
    mask = mask.to(device=device, dtype=torch.bool)
    response_ids = response_ids.to(device)
    out_logp = torch.zeros((r, t), dtype=torch.float32, device=device)
    out_ent = torch.zeros((r, t), dtype=torch.float32, device=device)
    t_eff = int(mask.any(0).nonzero().max()) + 1 if bool(mask.any()) else 0
    if t_eff == 0:
        return out_logp, out_ent
    resp, m = response_ids[:, :t_eff], mask[:, :t_eff]
    resp = resp.masked_fill(~m, pad_token_id)
    grad_ctx = torch.enable_grad() if with_grad else torch.no_grad()
    paused = contextlib.nullcontext() if with_grad else checkpointing_paused(model)
    with grad_ctx, paused:
        h = None
        if share_prefix and not cache_off(model, with_grad) and len({tuple(p) for p in prompt_ids}) < r:
            h = _shared_prefix_states(model.base_model, prompt_ids, resp, m, pad_token_id)
        if h is None:
            h = _full_states(model.base_model, prompt_ids, resp, m, pad_token_id)
        logp_sel, ent_sel = ChunkedTokenLogProb.apply(
            h, head.weight, head.bias, resp[m], float(temperature), int(chunk_tokens)
        )
        full = torch.zeros((r, t), dtype=torch.bool, device=device)
        full[:, :t_eff] = m
        logp = out_logp.masked_scatter(full, logp_sel)  # differentiable in logp_sel
        if entropy_grad and with_grad:
            ent_sel = torch.cat([
                token_entropy(F.linear(h[c : c + chunk_tokens], head.weight, head.bias).float(),
                              float(temperature))
                for c in range(0, h.shape[0], chunk_tokens)
            ])
            ent = out_ent.masked_scatter(full, ent_sel)
        else:
            ent = out_ent.masked_scatter(full, ent_sel.detach())
    return logp, ent


def _checkpointed_modules(model: nn.Module) -> list[nn.Module]:
    """The trunk and layers whose `gradient_checkpointing` flag is on (HF models)."""
    trunk = model.base_model
    return [m for m in (trunk, *getattr(trunk, "layers", ()))
            if getattr(m, "gradient_checkpointing", False) is True]


@contextlib.contextmanager
def checkpointing_paused(model: nn.Module) -> Iterator[None]:
    """Gradient checkpointing off for the block when `model` is in training mode (a no-grad
    pass: nothing would be recomputed, so the forward is unchanged); flags restored at exit."""
    flagged = _checkpointed_modules(model) if model.training else []
    for m in flagged:
        m.gradient_checkpointing = False
    try:
        yield
    finally:
        for m in flagged:
            m.gradient_checkpointing = True


def cache_off(model: nn.Module, with_grad: bool) -> bool:
    """True when the model's forward ignores `use_cache=True`: HF models with gradient
    checkpointing on (the trunk's or its layers' `gradient_checkpointing` flag) return no KV
    cache in training mode with grad enabled."""
    return with_grad and model.training and bool(_checkpointed_modules(model))


def _full_states(trunk: nn.Module, prompt_ids, resp, m, pad_token_id: int) -> torch.Tensor:
    """(N, H) final hidden states predicting the N real response tokens: one forward over
    [left-padded prompt | response] per row."""
    input_ids, attention, position_ids, width = build_scoring_inputs(
        prompt_ids, resp, m, pad_token_id=pad_token_id, device=resp.device
    )
    hidden = trunk(
        input_ids=input_ids, attention_mask=attention, position_ids=position_ids, use_cache=False
    ).last_hidden_state  # (R, P+T', H)
    return hidden[:, width - 1 : width - 1 + resp.shape[1]][m]


def _shared_prefix_states(trunk: nn.Module, prompt_ids, resp, m, pad_token_id: int):
    """Like `_full_states`, with each distinct prompt run once. None if the trunk returns no
    expandable cache (e.g. gradient checkpointing turns the cache off): the caller then runs
    the full forward.

    prefix:   trunk(U distinct prompts, left-padded (U, P)) -> states (U, P, H), cache (U, ., P, .)
    expand:   cache rows -> (R, ., P, .) by index (autograd sums the R rows' gradients back)
    response: trunk(responses (R, T), mask [prompt mask | response mask], positions
              len(prompt) + t, cache) -> states (R, T, H)
    The state predicting response token 0 is the prompt's last state; token t >= 1 is
    predicted by response state t - 1.
    """
    device = resp.device
    distinct: dict[tuple[int, ...], int] = {}
    row_prompt = [distinct.setdefault(tuple(p), len(distinct)) for p in prompt_ids]
    uniq = [list(p) for p in distinct]
    idx = torch.tensor(row_prompt, device=device)  # (R,)
    empty = torch.zeros((len(uniq), 0), dtype=torch.long, device=device)
    ids, attn, pos, _ = build_scoring_inputs(
        uniq, empty, empty.bool(), pad_token_id=pad_token_id, device=device
    )  # (U, P)
    prefix = trunk(input_ids=ids, attention_mask=attn, position_ids=pos, use_cache=True)
    # transformers >= 5.2x names it `cache`; earlier releases `past_key_values`
    cache = getattr(prefix, "cache", None) or getattr(prefix, "past_key_values", None)
    if cache is None or not hasattr(cache, "batch_select_indices"):
        return None
    cache.batch_select_indices(idx)  # (U, ...) -> (R, ...), differentiable indexing
    t = resp.shape[1]
    attention = torch.cat([attn[idx], m.long()], dim=1)  # (R, P + T)
    positions = attn.sum(1)[idx][:, None] + torch.arange(t, device=device)  # (R, T)
    hidden = trunk(
        input_ids=resp,
        attention_mask=attention,
        position_ids=positions,
        use_cache=True,
        **{_cache_kwarg(trunk): cache},
    ).last_hidden_state  # (R, T, H)
    first = prefix.last_hidden_state[:, -1][idx]  # (R, H): predicts response token 0
    states = torch.cat([first[:, None], hidden[:, :-1]], dim=1)  # (R, T, H)
    return states[m]


def _cache_kwarg(trunk: nn.Module) -> str:
    """The trunk's KV-cache argument: `cache` (transformers >= 5.2x) or `past_key_values`."""
    params = inspect.signature(type(trunk).forward).parameters
    return "cache" if "cache" in params else "past_key_values"


SELF_CERTAINTY_ROWS = 4  # rollouts per forward of `self_certainty`
SELF_CERTAINTY_TOKENS = 256  # response tokens per lm_head call of `self_certainty`


@torch.no_grad()
def self_certainty(
    model: nn.Module,
    prompt_ids: list[list[int]],
    response_ids: torch.Tensor,  # (R, T)
    mask: torch.Tensor,  # (R, T) bool
    temperature: float,
) -> torch.Tensor:
    """(R,) fp32 self-certainty of each rollout (Intuitor's reward); no response token -> 0.

        self_certainty(o) = mean_t KL(U || p_t) = mean_t [ -log V - (1/V) sum_j log p_t(j) ]

    over the response tokens t, p_t = softmax(logits_t / temperature) under `model`, V the
    vocabulary size. Teacher forcing in chunks of `SELF_CERTAINTY_ROWS` rows with the LM head
    applied to `SELF_CERTAINTY_TOKENS` tokens at a time, so the (R, T, V) logits never exist
    at once. Inputs are laid out as for `score_responses` (`build_scoring_inputs`: left-padded
    prompt, then the response), so the hidden state at column P - 1 + t predicts token t.
    """
    if len(prompt_ids) != response_ids.shape[0]:
        raise ValueError("prompt_ids must have one entry per rollout")
    if temperature <= 0:
        raise ValueError(f"temperature must be > 0, got {temperature}")
    head = lm_head_of(model)
    device = head.weight.device
    out = torch.zeros(response_ids.shape[0], dtype=torch.float32)
    for rows, m, hidden, width in _trunk_states(model, prompt_ids, response_ids, mask,
                                                SELF_CERTAINTY_ROWS):
        h = hidden[:, width - 1 : width - 1 + m.shape[1]][m]  # (N, H) states of real tokens
        per_token = torch.cat([
            -math.log(head.out_features)
            - torch.log_softmax(head(h[c : c + SELF_CERTAINTY_TOKENS]).float() / temperature,
                                -1).mean(-1)
            for c in range(0, h.shape[0], SELF_CERTAINTY_TOKENS)
        ])  # (N,) KL(U || p_t)
        row_of = m.nonzero()[:, 0]  # (N,) row of each real token
        sums = torch.zeros(m.shape[0], device=device).index_add_(0, row_of, per_token)
        out[rows] = (sums / m.sum(1).clamp_min(1)).cpu()
    return out


EMBED_ROWS = 8  # rollouts per forward of `mean_hidden_states`


@torch.no_grad()
def mean_hidden_states(
    model: nn.Module,
    prompt_ids: list[list[int]],
    response_ids: torch.Tensor,  # (R, T)
    mask: torch.Tensor,  # (R, T) bool
) -> torch.Tensor:
    """(R, H) fp32: each rollout's final hidden state (the trunk's `last_hidden_state`, after
    its final norm), averaged over the rollout's response tokens (EOS included); a rollout
    without a response token -> 0. The embedding EVOL-RL's novelty reads by default.

    Teacher forcing as `self_certainty` (left-padded prompt, then the response; the state at
    column P + t is the one that has read response token t), `EMBED_ROWS` rows per forward,
    the trunk only: no LM head runs, so it costs one no-grad trunk pass over the rows.
    """
    if len(prompt_ids) != response_ids.shape[0]:
        raise ValueError("prompt_ids must have one entry per rollout")
    head = lm_head_of(model)
    out = torch.zeros(response_ids.shape[0], head.in_features, dtype=torch.float32)  # (R, H)
    for rows, m, hidden, width in _trunk_states(model, prompt_ids, response_ids, mask,
                                                EMBED_ROWS):
        states = hidden[:, width : width + m.shape[1]].float() * m[..., None]  # (r, T, H)
        out[rows] = (states.sum(1) / m.sum(1, keepdim=True).clamp_min(1)).cpu()
    return out


def _trunk_states(model: nn.Module, prompt_ids: list[list[int]], response_ids: torch.Tensor,
                  mask: torch.Tensor, rows_per_forward: int
                  ) -> Iterator[tuple[slice, torch.Tensor, torch.Tensor, int]]:
    """Teacher-forced trunk passes over the rollouts, `rows_per_forward` rows at a time (rows
    without a response token are skipped): yields (rows, m (r, T) bool on the model's device,
    last_hidden_state (r, P + T, H), P), the response starting at column P."""
    device = lm_head_of(model).weight.device
    mask = mask.bool()
    for start in range(0, response_ids.shape[0], rows_per_forward):
        rows = slice(start, start + rows_per_forward)
        m = mask[rows].to(device)
        if not bool(m.any()):
            continue
        input_ids, attention, position_ids, width = build_scoring_inputs(
            prompt_ids[rows], response_ids[rows].masked_fill(~mask[rows], 0), m,
            pad_token_id=0, device=device,
        )
        hidden = model.base_model(
            input_ids=input_ids, attention_mask=attention, position_ids=position_ids,
            use_cache=False,
        ).last_hidden_state  # (r, P+T, H)
        yield rows, m, hidden, width
