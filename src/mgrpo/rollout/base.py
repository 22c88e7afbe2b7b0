"""`RolloutEngine`: the interface every engine implements, with the shared `score`.

An engine holds a reference to the live model (never a copy): parameters are read at
call time, so after `optimizer.step()` or an in-place EMA update the next `generate` /
`score` uses the new weights with no reload.
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

DEFAULT_SCORE_BATCH_TOKENS = 16384  # (prompt + response) tokens per scoring micro-batch


def model_eos_ids(model: nn.Module) -> tuple[int, ...]:
    """EOS id(s) from the generation config, else the model config; () if none."""
    for cfg in (getattr(model, "generation_config", None), model.config):
        eos = getattr(cfg, "eos_token_id", None) if cfg is not None else None
        if eos is not None:
            return tuple(int(e) for e in (eos if isinstance(eos, (list, tuple)) else [eos]))
    return ()


def stop_token_ids(model: nn.Module, tokenizer: object) -> tuple[int, ...]:
    """Sorted union of the tokenizer's EOS id and the model's EOS id(s): the ids that end a
    rollout in training and evaluation alike; () if neither defines one."""
    ids = set(model_eos_ids(model))
    eos = getattr(tokenizer, "eos_token_id", None)
    for item in eos if isinstance(eos, (list, tuple)) else [eos]:
        if isinstance(item, int):
            ids.add(item)
    return tuple(sorted(ids))


class RolloutEngine:
    """Base class: validation, stop ids, micro-batched no-grad `score`."""

    name = "base"

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
