"""LoRA training (peft): adapters train, the base stays frozen and is shared by all three roles.

With ``model.lora.r > 0``:
- the policy is the HF model with peft LoRA layers injected (``get_peft_model``); only the
  adapter tensors (``lora_A`` / ``lora_B``) require grad, so the optimizer, the gradients and
  the checkpoints' trainable state are adapter-sized;
- the momentum model is the SAME base plus an EMA of the adapters: an fp32 master of the
  adapter tensors only (`LoraMomentum`, one extra adapter copy, never a model). The momentum
  engine samples from the shared model with the master swapped into the adapter tensors for
  the duration of the call (`swapped_in`: copy in, generate, copy back; a transient second
  adapter-sized buffer holds the policy's adapters meanwhile);
- the reference is the base with adapters disabled (``disable_adapter()``), no extra copy,
  even with kl_coef > 0.
Export: ``model.lora.export=merge`` writes merged full weights ``W + (alpha / r) B A`` into each
checkpoint's HF directory (computed in fp32 from the live tensors; the training model is not
modified); ``adapters`` writes a peft adapter directory (``adapter_model.safetensors``).

Departures: none from the paper (which trains full weights); LoRA is an engineering option.
The adapter swap copies in place, so the fast engine's CUDA graphs (which record parameter
addresses) stay valid and see the momentum adapters.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from contextlib import AbstractContextManager, contextmanager
from pathlib import Path

import torch
from torch import nn

from mgrpo.config import LoraConfig
from mgrpo.rollout import RolloutBatch, RolloutEngine, SamplingParams
from mgrpo.rollout.weight_sync import merged_lora_weight
from mgrpo.train.layout.momentum import Momentum, trainable_names

ALL_LINEAR = "all-linear"


def target_modules(cfg: LoraConfig) -> list[str] | str:
    """`model.lora.target_modules` as peft wants it (a list, or the string "all-linear")."""
    names = [m.strip() for m in cfg.target_modules if m.strip()]
    return ALL_LINEAR if names == [ALL_LINEAR] else names


def apply_lora(model: nn.Module, cfg: LoraConfig) -> nn.Module:
    """Inject LoRA adapters into `model` in place; return the peft wrapper.

    `model` (the HF model) stays the object the engines and the scorer use: its linear
    layers now route through the adapters. Raises ValueError naming `model.lora.*` when peft
    is missing or a target module does not exist.
    """
    try:
        # lazy, optional dependency: pip install mgrpo[lora]
        from peft import LoraConfig as PeftLoraConfig
        from peft import get_peft_model
    except ImportError:
        raise ValueError("model.lora.r > 0 needs peft: pip install 'mgrpo[lora]'") from None
    peft_cfg = PeftLoraConfig(
        r=cfg.r, lora_alpha=cfg.alpha, lora_dropout=cfg.dropout,
        target_modules=target_modules(cfg), bias="none", task_type="CAUSAL_LM",
    )
    try:
        wrapped = get_peft_model(model, peft_cfg)
    except ValueError as exc:
        raise ValueError(f"model.lora.target_modules={cfg.target_modules!r}: {exc}") from None
    return wrapped


class LoraMomentum(Momentum):
    """EMA of the adapters: `master` fp32 tensors, one per trainable adapter tensor.

    `generator` is the shared policy model; sample from it inside `swapped_in()`. The
    `mgrpo.train.layout.momentum.Momentum` interface (update_, state_dict, load_state_dict).
    """

    kind = "LoRA momentum"

    def __init__(self, policy: nn.Module) -> None:
        self.generator = policy
        self.names = trainable_names(policy)
        if not self.names:
            raise ValueError("LoRA momentum: the model has no trainable adapter tensors")
        params = dict(policy.named_parameters())
        self._adapters = [params[n] for n in self.names]
        self.master = [p.detach().to(torch.float32).clone() for p in self._adapters]

    def _sources(self, policy: nn.Module) -> list[torch.Tensor]:
        """The adapter tensors (the same parameters as `policy`'s trainable ones)."""
        return [p.detach() for p in self._adapters]

    @contextmanager
    def swapped_in(self) -> Iterator[None]:
        """The momentum adapters in the model for the duration of the block, then restored."""
        with torch.no_grad():
            saved = [p.detach().clone() for p in self._adapters]
            torch._foreach_copy_([p.data for p in self._adapters], self.master)
        try:
            yield
        finally:
            with torch.no_grad():
                torch._foreach_copy_([p.data for p in self._adapters], saved)


class ScopedEngine:
    """A rollout engine whose `generate`, `score` and `sync_weights` run inside a context
    (the adapter swap: a vllm engine reads the weights it pushes inside it too); every other
    attribute is the wrapped engine's. Not a `RolloutEngine` subclass on purpose: the base
    class's own members (`sync_weights`, `holds_weights_copy`, ...) would hide the wrapped
    engine's."""

    def __init__(self, engine: RolloutEngine, scope: Callable[[], AbstractContextManager]) -> None:
        self.engine = engine
        self.scope = scope
        self.name = engine.name

    def generate(self, prompt_token_ids: Sequence[Sequence[int]], n: int,
                 params: SamplingParams) -> RolloutBatch:
        with self.scope():
            return self.engine.generate(prompt_token_ids, n, params)

    def score(self, prompt_ids: Sequence[Sequence[int]], response_ids: torch.Tensor,
              mask: torch.Tensor, temperature: float) -> tuple[torch.Tensor, torch.Tensor]:
        with self.scope():
            return self.engine.score(prompt_ids, response_ids, mask, temperature)

    def sync_weights(self) -> None:
        with self.scope():
            self.engine.sync_weights()

    def __getattr__(self, name: str) -> object:
        if name == "engine":  # not set yet (copy, unpickling): no recursion
            raise AttributeError(name)
        return getattr(self.engine, name)


def trainable_state(model: nn.Module) -> dict[str, torch.Tensor]:
    """The adapter tensors by name (what a LoRA checkpoint must restore)."""
    return {n: p.detach().cpu().contiguous() for n, p in model.named_parameters() if p.requires_grad}


@torch.no_grad()
def load_trainable_state(model: nn.Module, state: dict[str, torch.Tensor], source: Path) -> None:
    params = dict(model.named_parameters())
    names = trainable_names(model)
    missing = [n for n in names if n not in state]
    if missing:
        raise ValueError(f"{source}: LoRA adapters missing {missing[:3]} (different model.lora?)")
    for n in names:
        params[n].copy_(state[n].to(params[n].dtype))


@torch.no_grad()
def merged_state_dict(model: nn.Module) -> dict[str, torch.Tensor]:
    """Full weights with every active LoRA layer merged: W + scaling * B @ A (fp32 math,
    stored in W's dtype), under the plain HF key names (no `base_layer` / `lora_*` keys)."""
    # lazy, optional dependency: pip install mgrpo[lora]
    from peft.tuners.lora import LoraLayer

    merged: dict[str, torch.Tensor] = {}
    lora_prefixes = []
    for name, module in model.named_modules():
        if isinstance(module, LoraLayer) and hasattr(module, "base_layer"):
            lora_prefixes.append(name + ".")
            merged[f"{name}.weight"] = merged_lora_weight(module).cpu()
            if getattr(module.base_layer, "bias", None) is not None:
                merged[f"{name}.bias"] = module.base_layer.bias.detach().cpu()
    for key, value in model.state_dict().items():
        if any(key.startswith(p) for p in lora_prefixes):
            continue
        merged[key] = value.detach().cpu()
    return merged


class LoraExport:
    """What the checkpoint writer calls `save_pretrained` on: merged weights or adapters."""

    def __init__(self, model: nn.Module, peft_model: nn.Module, mode: str) -> None:
        self.model, self.peft_model, self.mode = model, peft_model, mode

    def save_pretrained(self, directory: str | Path, **kwargs: object) -> None:
        if self.mode == "adapters":
            self.peft_model.save_pretrained(str(directory), safe_serialization=True)
            self.model.config.save_pretrained(str(directory))  # base config, for reference
            return
        # lazy, start-up: safetensors only for checkpoint I/O
        from safetensors.torch import save_file

        state = merged_state_dict(self.model)
        if getattr(self.model.config, "tie_word_embeddings", False):
            state.pop("lm_head.weight", None)
        self.model.config.save_pretrained(str(directory))
        if getattr(self.model, "generation_config", None) is not None:
            self.model.generation_config.save_pretrained(str(directory))
        save_file({k: v.contiguous() for k, v in state.items()},
                  str(Path(directory) / "model.safetensors"), metadata={"format": "pt"})


def count_parameters(*models: nn.Module | None) -> int:
    """Elements of the DISTINCT parameter storages across `models` (shared tensors count once)."""
    seen: set[int] = set()
    total = 0
    for model in models:
        if model is None:
            continue
        for p in model.parameters():
            key = p.untyped_storage().data_ptr()
            if key not in seen:
                seen.add(key)
                total += p.numel()
    return total
