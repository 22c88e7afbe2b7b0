"""`RolloutEngine`: the interface every engine implements, with the shared `score`.

An engine holds a reference to the live model. `hf` and `fast` read its parameters at call
time, so after `optimizer.step()` or an in-place EMA update the next `generate` / `score`
uses the new weights with no reload. An engine that samples from its own copy of the weights
(`vllm`, `holds_weights_copy = True`) must be told after every change: `sync_weights()`
pushes the model's current weights into the copy, and `version` (a
`rollout.weight_sync.WeightVersion`, bumped by whoever changes the weights) lets it refuse to
sample while its copy is behind. `score` always runs the live torch model.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from mgrpo.checks import check_int
from mgrpo.registry import Registry
from mgrpo.rollout.batch import RolloutBatch, check_budget, check_prompts
from mgrpo.rollout.params import SamplingParams
from mgrpo.rollout.scoring import DEFAULT_CHUNK_TOKENS, score_responses
from mgrpo.rollout.weight_sync import WeightVersion

DEFAULT_SCORE_BATCH_TOKENS = 16384  # (prompt + response) tokens per scoring micro-batch


def model_eos_ids(model: nn.Module) -> tuple[int, ...]:
    """EOS id(s) from the generation config, else the model config; () if none."""
    for cfg in (getattr(model, "generation_config", None), model.config):
        eos = getattr(cfg, "eos_token_id", None) if cfg is not None else None
        if eos is not None:
            return tuple(int(e) for e in (eos if isinstance(eos, (list, tuple)) else [eos]))
    return ()


EOT_PROBE = "mgrpo-end-of-turn-probe"  # assistant text whose rendering shows the turn's end


def end_of_turn_ids(tokenizer: object) -> tuple[int, ...]:
    """The special token a chat template puts right after an assistant turn's content:
    `<|im_end|>` (ChatML: Qwen, SmolLM2), `<|eot_id|>` (Llama 3), `<end_of_turn>` (Gemma),
    `<|end|>` (Phi-3). Found by rendering a probe conversation (user, then an assistant turn
    with a marker) and tokenizing what follows the marker. () without a chat template, when
    the template refuses the probe, or when the turn ends in plain text rather than a special
    token. Qwen base models need it: their EOS is `<|endoftext|>`, but a templated turn ends
    with `<|im_end|>`, so without it a rollout runs on into an invented next turn."""
    if not getattr(tokenizer, "chat_template", None):
        return ()
    messages = [{"role": "user", "content": "1+1"}, {"role": "assistant", "content": EOT_PROBE}]
    try:
        text = tokenizer.apply_chat_template(messages, tokenize=False)  # type: ignore[attr-defined]
    except Exception:  # noqa: BLE001 - a template may refuse any conversation shape (jinja raise)
        return ()
    if not isinstance(text, str) or EOT_PROBE not in text:
        return ()
    tail = text.split(EOT_PROBE, 1)[1]
    ids = tokenizer(tail, add_special_tokens=False)["input_ids"] if tail else []  # type: ignore[operator]
    if not ids:
        return ()
    special = set(getattr(tokenizer, "all_special_ids", []))
    decoder = getattr(tokenizer, "added_tokens_decoder", {}) or {}
    special |= {i for i, added in decoder.items() if getattr(added, "special", False)}
    return (int(ids[0]),) if ids[0] in special else ()


def stop_token_ids(model: nn.Module, tokenizer: object) -> tuple[int, ...]:
    """Sorted union of the tokenizer's EOS id, the model's EOS id(s) and the chat template's
    end-of-turn token (`end_of_turn_ids`): the ids that end a rollout in training and
    evaluation alike, with every engine; () if none is defined."""
    ids = set(model_eos_ids(model)) | set(end_of_turn_ids(tokenizer))
    eos = getattr(tokenizer, "eos_token_id", None)
    for item in eos if isinstance(eos, (list, tuple)) else [eos]:
        if isinstance(item, int):
            ids.add(item)
    return tuple(sorted(ids))


class RolloutEngine:
    """Base class: validation, stop ids, micro-batched no-grad `score`, and the weight-sync
    interface (`version`, `sync_weights`, `close`) that engines reading the live weights
    satisfy with no work."""

    name = "base"
    holds_weights_copy = False  # True: samples from its own copy (call sync_weights after changes)

    def __init__(
        self,
        model: nn.Module,
        *,
        pad_token_id: int,
        score_chunk_tokens: int = DEFAULT_CHUNK_TOKENS,
        score_batch_tokens: int = DEFAULT_SCORE_BATCH_TOKENS,
    ) -> None:
        check_int(pad_token_id, "pad_token_id", low=0, rule="a non-negative int")
        self.model = model
        self.pad_token_id = pad_token_id
        self.score_chunk_tokens = score_chunk_tokens
        self.score_batch_tokens = score_batch_tokens
        # changes of the sampled weights (the trainer bumps it; engines with a copy compare it)
        self.version = WeightVersion()

    def sync_weights(self) -> None:
        """Make the next `generate` sample the model's current weights. Nothing to do for an
        engine that reads the live parameters (hf, fast)."""

    def close(self) -> None:
        """Release what the engine holds outside the model (nothing for hf and fast)."""

    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device

    @property
    def max_positions(self) -> int | None:
        return getattr(self.model.config, "max_position_embeddings", None)

    def stop_ids(self, params: SamplingParams) -> tuple[int, ...]:
        return params.stop_token_ids or model_eos_ids(self.model)

    def _check_call(
        self, prompt_token_ids: Sequence[Sequence[int]], n: int, params: SamplingParams
    ) -> list[list[int]]:
        if not isinstance(params, SamplingParams):
            raise ValueError(f"params must be a SamplingParams, got {type(params).__name__}")
        check_int(n, "n", low=1)
        prompts = check_prompts(
            prompt_token_ids, max_positions=self.max_positions, name="prompt_token_ids"
        )
        check_budget(prompts, params.max_new_tokens, self.max_positions)
        return prompts

    def generate(
        self, prompt_token_ids: Sequence[Sequence[int]], n: int, params: SamplingParams
    ) -> RolloutBatch:
        raise NotImplementedError

    def score(
        self,
        prompt_ids: Sequence[Sequence[int]],
        response_ids: torch.Tensor,
        mask: torch.Tensor,
        temperature: float,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """No-grad (logp, entropy) (R, T) fp32 of given responses; zeros on padding.

        Rows are processed in micro-batches of about `score_batch_tokens` padded tokens.
        """
        prompts = check_prompts(prompt_ids, max_positions=None, name="prompt_ids")
        r, t = response_ids.shape
        if len(prompts) != r:
            raise ValueError(f"prompt_ids has {len(prompts)} entries but response_ids has {r} rows")
        width = max(len(p) for p in prompts) + t
        rows = max(1, self.score_batch_tokens // max(width, 1))
        logps, ents = [], []
        for s in range(0, r, rows):
            lp, en = score_responses(
                self.model,
                prompts[s : s + rows],
                response_ids[s : s + rows],
                mask[s : s + rows],
                temperature,
                chunk_tokens=self.score_chunk_tokens,
                with_grad=False,
                pad_token_id=self.pad_token_id,
            )
            logps.append(lp)
            ents.append(en)
        return torch.cat(logps), torch.cat(ents)


#: Rollout engines by name (`model.engine`); each engine class registers at its definition.
ENGINES: Registry[type[RolloutEngine]] = Registry("rollout engine")
