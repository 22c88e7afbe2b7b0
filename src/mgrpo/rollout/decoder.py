"""The per-model half of the `fast` engine's decoder: everything that touches weights.

A `ModelPlan` is built from the LIVE parameters of a HF Llama / Qwen2 / Qwen3 model (it holds
references to the parameter tensors, so in-place updates are seen) once per set of parameter
tensors (`PlanCache`); the tensors it derives from them (fused copies, the Qwen3 q/k norm
weights) are rewritten IN PLACE at the start of every call (`refresh_plan_`), so their
addresses, which a captured CUDA graph reads, stay valid and their values current. The
engine splits a decoder layer in three:

    pre_attention(plan, layer, x)   per model:  h = RMSNorm(x); qkv = h @ [Wq; Wk; Wv]^T (+ b);
                                                Qwen3: q, k <- per-head RMSNorm(q), RMSNorm(k)
    rotary + KV cache + attention   shared by every model in the batch (rows are independent)
    post_attention(plan, layer, x)  per model:  x = x + o_proj(out);
                                                x = x + down(act(gate(h)) * up(h)), h = RMSNorm(x)

so one decode loop can serve several models at once (the policy and the momentum model of
M-GRPO): rows are grouped by model into contiguous `Segment`s and only the weight-touching
halves run per segment (`by_segment`).

Fast path ("direct"): when every projection is a plain `nn.Linear`, every norm an HF
`*RMSNorm` and the MLP the gated `gate/up/down` form, the plan calls `F.linear` / `F.rms_norm`
on the raw weights (an `nn.Module` call costs ~15 us of Python on CPU, more than a small
matmul). With `fuse=True` it also concatenates [Wq; Wk; Wv] and [Wgate; Wup] (two matmuls per layer
instead of five; a copy of those weights, held by the plan and rewritten once per call).
Anything else (LoRA-wrapped projections, other norms or MLPs) runs through the modules
themselves. `unsupported_reason` says which models the engine cannot run at all.

The fp32 RMSNorm is `F.rms_norm(x, w)` = x * rsqrt(mean(x^2) + eps) * w, the HF formula; for
other dtypes the HF rounding (normalise in fp32, cast, then multiply by w) is kept.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from mgrpo.rollout.scoring import lm_head_of

SUPPORTED_MODEL_TYPES = ("llama", "qwen2", "qwen3")
LAYER_MODULES = ("input_layernorm", "post_attention_layernorm", "mlp", "self_attn")
ATTN_MODULES = ("q_proj", "k_proj", "v_proj", "o_proj")
# fuse_weights=None fuses on CPU up to this many copied entries: there a decode step of a small
# model costs its number of kernels (tiny model: -5% decode time; SmolLM2-135M shape: none);
# never on CUDA by default (the fused copies double those weights' memory)
FUSE_AUTO_MAX_ENTRIES = 1 << 20


def unsupported_reason(model: nn.Module) -> str | None:
    """Why the fast engine cannot run `model` (None if it can)."""
    cfg = model.config
    mtype = getattr(cfg, "model_type", None)
    if mtype not in SUPPORTED_MODEL_TYPES:
        return f"model_type {mtype!r} (supported: {', '.join(SUPPORTED_MODEL_TYPES)})"
    trunk = getattr(model, "base_model", None)
    for attr in ("embed_tokens", "layers", "norm", "rotary_emb"):
        if not hasattr(trunk, attr):
            return f"{type(model).__name__} has no trunk attribute {attr!r}"
    for layer in trunk.layers:
        missing = [m for m in LAYER_MODULES if not hasattr(layer, m)]
        missing += [m for m in ATTN_MODULES if not hasattr(layer.self_attn, m)]
        if missing:
            return f"decoder layer without {missing}"
    layer_types = getattr(cfg, "layer_types", None) or []
    if any(t != "full_attention" for t in layer_types):
        return f"non-full attention layers {sorted(set(layer_types))}"
    if getattr(cfg, "use_sliding_window", False) and getattr(cfg, "sliding_window", None):
        return "sliding-window attention"
    if not isinstance(model.get_output_embeddings(), nn.Linear):
        return "LM head is not an nn.Linear"
    return None


def fused_entries(model: nn.Module) -> int:
    """Entries `fuse=True` copies: the q/k/v and gate/up weights of every layer."""
    total = 0
    for layer in model.base_model.layers:
        attn, mlp = layer.self_attn, layer.mlp
        for mod in (attn.q_proj, attn.k_proj, attn.v_proj,
                    getattr(mlp, "gate_proj", None), getattr(mlp, "up_proj", None)):
            weight = getattr(mod, "weight", None)
            total += weight.numel() if isinstance(weight, torch.Tensor) else 0
    return total


def fuse_by_default(model: nn.Module, on_cuda: bool) -> bool:
    """`fuse_weights=None`: fuse on CPU while the copies are small (`FUSE_AUTO_MAX_ENTRIES`)."""
    return not on_cuda and fused_entries(model) <= FUSE_AUTO_MAX_ENTRIES


def rms_norm(module: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """HF Llama/Qwen RMSNorm via the fused `F.rms_norm`; any other norm module is called."""
    if not _hf_rms(module):
        return module(x)
    return norm(_norm(module), x)


def rotate_half(x: torch.Tensor) -> torch.Tensor:
    x1, x2 = x.chunk(2, dim=-1)
    return torch.cat((-x2, x1), dim=-1)


def _plain_linear(m: object) -> bool:
    return type(m) is nn.Linear


def _hf_rms(m: object) -> bool:
    return type(m).__name__.endswith("RMSNorm") and hasattr(m, "variance_epsilon")


def _bias_parts(mods: list[nn.Linear]) -> list[torch.Tensor] | None:
    if all(m.bias is None for m in mods):
        return None
    return [m.bias if m.bias is not None else m.weight.new_zeros(m.out_features) for m in mods]


Weight = tuple[torch.Tensor, torch.Tensor | None]  # (W, b) of a projection
Norm = tuple[torch.Tensor, float]  # (w, eps) of an RMSNorm


@dataclass
class LayerPlan:
    """Weights of one decoder layer. On the direct path `proj` / `norms` hold references to the
    live parameters (looked up once: an `nn.Module` attribute lookup costs ~1 us of Python,
    dozens per layer). `DERIVED` names the tensors made FROM the parameters (None when not
    used): `qkv_w`/`qkv_b`/`gate_up_w`/`gate_up_b` fused copies, `qk_norm_w` the Qwen3 q/k
    norm weights expanded per head; `refresh_plan_` rewrites them in place."""

    DERIVED = ("qkv_w", "qkv_b", "gate_up_w", "gate_up_b", "qk_norm_w")

    module: nn.Module  # the HF decoder layer
    scale: float = 1.0  # attention softmax scale
    proj: dict[str, Weight] | None = None  # q, k, v, o, gate, up, down
    norms: dict[str, Norm] | None = None  # input, post, (Qwen3) q, k
    qkv_w: torch.Tensor | None = None
    qkv_b: torch.Tensor | None = None
    gate_up_w: torch.Tensor | None = None
    gate_up_b: torch.Tensor | None = None
    qk_norm_w: torch.Tensor | None = None  # Qwen3: (nh + kvh, D) per-head norm weights


@dataclass
class ModelPlan:
    """One model's weights as the decoder uses them; `direct` selects the fast path."""

    model: nn.Module
    layers: list[LayerPlan]
    direct: bool
    fused: bool
    num_heads: int
    num_kv_heads: int
    head_dim: int
    act: Callable[[torch.Tensor], torch.Tensor] | None = None
    final_norm: Norm | None = None  # direct path only
    head: Weight | None = None  # LM head (W, b)

    @property
    def trunk(self) -> nn.Module:
        return self.model.base_model

    def derived_tensors(self) -> list[torch.Tensor]:
        """Every tensor the plan owns (made from the parameters), layer by layer."""
        return [t for lp in self.layers for name in LayerPlan.DERIVED
                if (t := getattr(lp, name)) is not None]


def tensor_key(tensors) -> tuple:
    """(address, dtype, shape) of each tensor: equal keys = the same memory read the same way."""
    return tuple((t.data_ptr(), t.dtype, tuple(t.shape)) for t in tensors)


class PlanCache:
    """One model's `ModelPlan`, rebuilt only when its parameter tensors change (another
    address, dtype or shape: `model.to`, a replaced `.data`, a LoRA wrap) or `fuse` does;
    otherwise its derived tensors are refreshed in place, so a graph that read them reads
    this call's values."""

    def __init__(self) -> None:
        self.plan: ModelPlan | None = None
        self.key: tuple | None = None
        self.builds = 0

    def get(self, model: nn.Module, *, fuse: bool) -> ModelPlan:
        key = (fuse, tensor_key(model.parameters()))
        if self.plan is None or key != self.key or self.plan.model is not model:
            self.plan, self.key = build_plan(model, fuse=fuse), key
            self.builds += 1
        else:
            refresh_plan_(self.plan)
        return self.plan


def direct_path_reason(model: nn.Module) -> str | None:
    """Why `model` must run through its modules (None if the direct fast path applies)."""
    for i, layer in enumerate(model.base_model.layers):
        attn, mlp = layer.self_attn, layer.mlp
        linears = [getattr(attn, n) for n in ("q_proj", "k_proj", "v_proj", "o_proj")]
        linears += [getattr(mlp, n, None) for n in ("gate_proj", "up_proj", "down_proj")]
        if not all(_plain_linear(m) for m in linears):
            return f"layer {i}: a projection is not a plain nn.Linear"
        norms = [layer.input_layernorm, layer.post_attention_layernorm]
        norms += [getattr(attn, n) for n in ("q_norm", "k_norm") if hasattr(attn, n)]
        if not all(_hf_rms(m) for m in norms):
            return f"layer {i}: a norm is not an HF RMSNorm"
        if not hasattr(mlp, "act_fn"):
            return f"layer {i}: MLP without act_fn"
    if not _hf_rms(model.base_model.norm):
        return "final norm is not an HF RMSNorm"
    return None


def build_plan(model: nn.Module, *, fuse: bool) -> ModelPlan:
    """The plan of `model` (see the module docstring). `fuse` only applies on the direct path."""
    cfg = model.config
    nh = cfg.num_attention_heads
    kvh = getattr(cfg, "num_key_value_heads", None) or nh
    d = getattr(cfg, "head_dim", None) or cfg.hidden_size // nh
    direct = direct_path_reason(model) is None
    layers = []
    for layer in model.base_model.layers:
        attn, mlp = layer.self_attn, layer.mlp
        lp = LayerPlan(module=layer, scale=float(getattr(attn, "scaling", d**-0.5)))
        if direct:
            lp.proj = {
                name: (mod.weight, mod.bias)
                for name, mod in (
                    ("q", attn.q_proj), ("k", attn.k_proj), ("v", attn.v_proj),
                    ("o", attn.o_proj), ("gate", mlp.gate_proj), ("up", mlp.up_proj),
                    ("down", mlp.down_proj),
                )
            }  # fmt: skip
            lp.norms = {
                "input": _norm(layer.input_layernorm),
                "post": _norm(layer.post_attention_layernorm),
            }
            if hasattr(attn, "q_norm"):
                lp.norms["q"], lp.norms["k"] = _norm(attn.q_norm), _norm(attn.k_norm)
        if direct:
            for name, parts in _derived_parts(layer, direct and fuse, nh, kvh, d).items():
                setattr(lp, name, torch.cat(parts))
        layers.append(lp)
    act = final_norm = None
    if direct:
        hidden_act = getattr(cfg, "hidden_act", None)
        act = F.silu if hidden_act == "silu" else model.base_model.layers[0].mlp.act_fn
        final_norm = _norm(model.base_model.norm)
    head = lm_head_of(model)
    return ModelPlan(
        model, layers, direct, fused=direct and fuse, num_heads=nh, num_kv_heads=kvh,
        head_dim=d, act=act, final_norm=final_norm, head=(head.weight, head.bias),
    )  # fmt: skip


def _derived_parts(layer: nn.Module, fuse: bool, nh: int, kvh: int, d: int):
    """{LayerPlan field: the tensors concatenated into it} for one decoder layer."""
    attn, mlp = layer.self_attn, layer.mlp
    parts: dict[str, list[torch.Tensor]] = {}
    if fuse:
        qkv, gu = [attn.q_proj, attn.k_proj, attn.v_proj], [mlp.gate_proj, mlp.up_proj]
        parts["qkv_w"] = [m.weight for m in qkv]  # -> ((nh + 2 kvh) D, H)
        parts["gate_up_w"] = [m.weight for m in gu]  # -> (2 I, H)
        for name, mods in (("qkv_b", qkv), ("gate_up_b", gu)):
            if (bias := _bias_parts(mods)) is not None:
                parts[name] = bias
    if hasattr(attn, "q_norm") and attn.q_norm.variance_epsilon == attn.k_norm.variance_epsilon:
        # -> (nh + kvh, D)
        parts["qk_norm_w"] = [attn.q_norm.weight.expand(nh, d), attn.k_norm.weight.expand(kvh, d)]
    return parts


@torch.no_grad()
def refresh_plan_(plan: ModelPlan) -> None:
    """Rewrite every derived tensor of `plan` in place from the live parameters (same
    addresses, this call's values)."""
    if not plan.direct:
        return
    for lp in plan.layers:
        parts = _derived_parts(lp.module, plan.fused, plan.num_heads, plan.num_kv_heads,
                               plan.head_dim)
        for name, tensors in parts.items():
            torch.cat(tensors, out=getattr(lp, name))


def _norm(module: nn.Module) -> Norm:
    return module.weight, float(module.variance_epsilon)


def norm(weights: Norm, x: torch.Tensor) -> torch.Tensor:
    """HF RMSNorm from cached (w, eps): `F.rms_norm` in fp32, else the HF rounding."""
    w, eps = weights
    if x.dtype == torch.float32 and w.dtype == torch.float32:
        return F.rms_norm(x, (x.shape[-1],), w, eps=eps)
    return w * F.rms_norm(x.float(), (x.shape[-1],), eps=eps).to(x.dtype)


def embed(plan: ModelPlan, tok: torch.Tensor) -> torch.Tensor:
    """Input embeddings (..., H) of token ids: always a module call (once per step), so forward
    hooks on the input embeddings (fault injection, user probes) see every generation step."""
    return plan.trunk.embed_tokens(tok)


def logits_of(plan: ModelPlan, x_last: torch.Tensor) -> torch.Tensor:
    """fp32 next-token logits (B, V) from last hidden states (B, H).

    On CPU the product is formed as (W h^T)^T (see `linear`: with V >> B, MKL runs the
    (V, H) x (H, B) form 13-35% faster than h W^T at V = 49,152, H = 576, B = 32), then made
    contiguous for the row-wise softmax."""
    if plan.direct:
        h = norm(plan.final_norm, x_last)
    else:
        h = rms_norm(plan.trunk.norm, x_last)
    return linear(h, *plan.head).float().contiguous()


def pre_attention(plan: ModelPlan, index: int, x: torch.Tensor) -> torch.Tensor:
    """qkv (..., nh + 2 kvh, D) of layer `index` on x (..., H), before rotary (Qwen3 q/k
    norms applied); x is (b, s, H) in prefill and (b, H) in decode (2-D: cheaper matmuls)."""
    lp = plan.layers[index]
    lead = x.shape[:-1]
    nh, kvh, d = plan.num_heads, plan.num_kv_heads, plan.head_dim
    if not plan.direct:
        attn = lp.module.self_attn
        h = rms_norm(lp.module.input_layernorm, x)
        qkv = torch.cat([attn.q_proj(h), attn.k_proj(h), attn.v_proj(h)], dim=-1)
        qkv = qkv.view(*lead, nh + 2 * kvh, d)
        if hasattr(attn, "q_norm"):
            q, k, v = qkv.split([nh, kvh, kvh], dim=-2)
            qkv = torch.cat([rms_norm(attn.q_norm, q), rms_norm(attn.k_norm, k), v], dim=-2)
        return qkv
    h = norm(lp.norms["input"], x)
    if lp.qkv_w is not None:
        qkv = linear(h, lp.qkv_w, lp.qkv_b).reshape(*lead, nh + 2 * kvh, d)
    else:
        proj = lp.proj
        qkv = torch.cat(
            [linear(h, *proj["q"]), linear(h, *proj["k"]), linear(h, *proj["v"])], dim=-1
        ).view(*lead, nh + 2 * kvh, d)
    if "q" in lp.norms:
        if lp.qk_norm_w is not None:
            eps = lp.norms["q"][1]
            qk = qkv[..., : nh + kvh, :]
            # HF: w * RMSNorm_fp32(x).to(dtype); w is (nh + kvh, D), so not fusable into F.rms_norm
            normed = lp.qk_norm_w * F.rms_norm(qk.float(), (d,), eps=eps).to(qk.dtype)
            qkv = torch.cat([normed, qkv[..., nh + kvh :, :]], dim=-2)
        else:
            q, k, v = qkv.split([nh, kvh, kvh], dim=-2)
            qkv = torch.cat([norm(lp.norms["q"], q), norm(lp.norms["k"], k), v], dim=-2)
    return qkv


def post_attention(plan: ModelPlan, index: int, x: torch.Tensor, out: torch.Tensor) -> torch.Tensor:
    """Layer `index`: x + o_proj(out), then the MLP block with its residual: (..., H)."""
    lp = plan.layers[index]
    if not plan.direct:
        layer = lp.module
        x = x + layer.self_attn.o_proj(out)
        return x + layer.mlp(rms_norm(layer.post_attention_layernorm, x))
    proj = lp.proj
    x = x + linear(out, *proj["o"])
    h = norm(lp.norms["post"], x)
    if lp.gate_up_w is not None:
        gate, up = linear(h, lp.gate_up_w, lp.gate_up_b).chunk(2, dim=-1)
    else:
        gate, up = linear(h, *proj["gate"]), linear(h, *proj["up"])
    return x + linear(plan.act(gate) * up, *proj["down"])


TRANSPOSED_MIN_WEIGHT = 1 << 17  # from here (W x^T)^T wins on CPU with >1 thread and >=16 rows
TRANSPOSED_MIN_ROWS = 16
TRANSPOSED_ALWAYS = 1 << 23  # LM-head-sized weights: (W x^T)^T wins at any thread count


def linear(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None) -> torch.Tensor:
    """F.linear(x, W, b) = x W^T + b; for a 2-D x on CPU, when faster, formed as (W x^T)^T.

    Which form wins depends on the shape and the thread count (`_transposed_wins`): with MKL,
    LM-head-sized weights are faster transposed at any thread count, layer projections only
    with many rows and more than one thread, and few rows are slower that way (measurements:
    docs/performance.md). The result is
    a transposed view (strides (1, B)); fed to the next `linear`, its x^T is contiguous again,
    and elementwise ops keep the layout, so a chain of projections never copies."""
    if not _transposed_wins(x, weight):
        return F.linear(x, weight, bias)
    out = torch.mm(weight, x.t()).t()  # (B, O), a transposed view
    return out if bias is None else out + bias


@dataclass(frozen=True)
class Segment:
    """Rows [start, stop) of the batch belong to `plan`'s model."""

    plan: ModelPlan
    start: int
    stop: int


def by_segment(segments: list[Segment], fn: Callable, *row_args: torch.Tensor) -> torch.Tensor:
    """fn(plan, *row_args[rows]) per segment, concatenated along rows (one segment: no
    slicing, no copy)."""
    if len(segments) == 1:
        return fn(segments[0].plan, *row_args)
    return torch.cat([fn(s.plan, *(a[s.start : s.stop] for a in row_args)) for s in segments])


def _transposed_wins(x: torch.Tensor, weight: torch.Tensor) -> bool:
    if x.dim() != 2 or x.device.type != "cpu":
        return False
    entries = weight.numel()
    if entries >= TRANSPOSED_ALWAYS:
        return True
    return (
        entries >= TRANSPOSED_MIN_WEIGHT
        and x.shape[0] >= TRANSPOSED_MIN_ROWS
        and torch.get_num_threads() > 1
    )
