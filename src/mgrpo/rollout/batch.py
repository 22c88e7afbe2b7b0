"""`RolloutBatch`: what every engine returns, plus input validation shared by the engines."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, fields
from typing import Any

import torch


@dataclass
class RolloutBatch:
    """R = len(prompts) * n rollouts, prompt-major (prompt 0's n samples first).

    Tensors (T = longest response in the batch):
    - prompt_index (R,) long: which prompt each rollout answers.
    - response_ids (R, T) long, right-padded with the pad id.
    - response_mask (R, T) bool: True on real tokens, the stop/EOS token included.
    - logprobs (R, T) fp32: log p(token) under softmax(logits / T_s); 0 on padding.
    - entropies (R, T) fp32: -sum p log p of that distribution (docs/design.md §3); 0 on padding.
    - lengths (R,) long = response_mask.sum(1).
    - finish_reasons: "stop" (ended on a stop token) or "length" (hit max_new_tokens).
    - sampler_logprobs (R, T) fp32 or None: log p(token) as the sampler itself computed it,
      when that is not `logprobs` (vllm: vLLM's own log-probs of the distribution it sampled
      from, while `logprobs` come from the torch model's scoring pass); 0 on padding. None:
      `logprobs` are the sampler's own (fast) or the scoring pass's (hf).
    """

    prompt_index: torch.Tensor
    response_ids: torch.Tensor
    response_mask: torch.Tensor
    logprobs: torch.Tensor
    entropies: torch.Tensor
    lengths: torch.Tensor
    finish_reasons: list[str]
    sampler_logprobs: torch.Tensor | None = None

    @property
    def num_rollouts(self) -> int:
        return int(self.response_ids.shape[0])

    def select(self, rows: torch.Tensor) -> RolloutBatch:
        """The rollouts at row indices `rows` (R',), trimmed to their longest response (width
        >= 1); `rows` may live on the CPU or on the batch's device."""
        mask = self.response_mask[rows]
        width = max(int(mask.sum(dim=1).max().item()), 1) if len(rows) else 1
        return RolloutBatch(
            prompt_index=self.prompt_index[rows],
            response_ids=self.response_ids[rows, :width],
            response_mask=mask[:, :width],
            logprobs=self.logprobs[rows, :width],
            entropies=self.entropies[rows, :width],
            lengths=self.lengths[rows],
            finish_reasons=[self.finish_reasons[i] for i in rows.tolist()],
            sampler_logprobs=(None if self.sampler_logprobs is None
                              else self.sampler_logprobs[rows, :width]),
        )

    @staticmethod
    def cat(batches: Sequence[RolloutBatch], prompts_per_batch: Sequence[int] | None = None,
            pad_token_id: int = 0) -> RolloutBatch:
        """Prompt-major concatenation of batches over consecutive prompt sets: batch i's prompt
        indices are shifted by the number of prompts before it (`prompts_per_batch[i]`, else
        each batch's max index + 1, one host sync per batch); responses are right-padded to
        the widest with `pad_token_id` (padding is masked, never read). One batch: itself."""
        if len(batches) == 1:
            return batches[0]
        width = max(b.response_ids.shape[1] for b in batches)

        def pad(t: torch.Tensor, value: Any) -> torch.Tensor:
            return torch.nn.functional.pad(t, (0, width - t.shape[1]), value=value)

        if prompts_per_batch is None:
            prompts_per_batch = [int(b.prompt_index.max().item()) + 1 if b.num_rollouts else 0
                                 for b in batches]
        shifted, offset = [], 0
        for b, prompts in zip(batches, prompts_per_batch, strict=True):
            shifted.append(b.prompt_index + offset)
            offset += prompts
        return RolloutBatch(
            prompt_index=torch.cat(shifted),
            response_ids=torch.cat([pad(b.response_ids, pad_token_id) for b in batches]),
            response_mask=torch.cat([pad(b.response_mask, False) for b in batches]),
            logprobs=torch.cat([pad(b.logprobs, 0.0) for b in batches]),
            entropies=torch.cat([pad(b.entropies, 0.0) for b in batches]),
            lengths=torch.cat([b.lengths for b in batches]),
            finish_reasons=[r for b in batches for r in b.finish_reasons],
            sampler_logprobs=(None if any(b.sampler_logprobs is None for b in batches)
                              else torch.cat([pad(b.sampler_logprobs, 0.0) for b in batches])),
        )

    def to(self, device: torch.device | str) -> RolloutBatch:
        """A copy with every tensor moved to `device`."""
        moved = {
            f.name: (v.to(device) if isinstance(v, torch.Tensor) else v if v is None else list(v))
            for f in fields(self)
            for v in [getattr(self, f.name)]
        }
        return RolloutBatch(**moved)


def check_prompts(
    prompt_token_ids: Sequence[Sequence[int]], *, max_positions: int | None, name: str
) -> list[list[int]]:
    """Validate prompts: non-empty list of non-empty int lists shorter than the context."""
    if not isinstance(prompt_token_ids, Sequence) or len(prompt_token_ids) == 0:
        raise ValueError(f"{name} must be a non-empty list of token-id lists")
    out = []
    for i, p in enumerate(prompt_token_ids):
        if isinstance(p, torch.Tensor):
            p = p.tolist()
        if not isinstance(p, Sequence) or len(p) == 0:
            raise ValueError(f"{name}[{i}] must be a non-empty list of token ids")
        p = [int(t) for t in p]
        if max_positions is not None and len(p) >= max_positions:
            raise ValueError(
                f"{name}[{i}] has {len(p)} tokens, which leaves no room in the model's "
                f"context of {max_positions} positions"
            )
        out.append(p)
    return out


def check_budget(prompts: list[list[int]], max_new_tokens: int, max_positions: int | None) -> None:
    longest = max(len(p) for p in prompts)
    if max_positions is not None and longest + max_new_tokens > max_positions:
        raise ValueError(
            f"max_new_tokens={max_new_tokens} plus the longest prompt ({longest} tokens) exceeds "
            f"the model's context of {max_positions} positions"
        )


def finalize_batch(
    tokens: torch.Tensor,
    logprobs: torch.Tensor,
    entropies: torch.Tensor,
    mask: torch.Tensor,
    *,
    stop_ids: torch.Tensor,
    n: int,
    num_prompts: int,
    pad_token_id: int,
) -> RolloutBatch:
    """Trim to the longest response, zero the padding, derive lengths and finish reasons.

    A response finishes with "stop" iff its last real token is a stop token.
    """
    lengths = mask.sum(1)  # (R,)
    t_max = max(int(lengths.max()), 1)
    tokens, logprobs, entropies, mask = (x[:, :t_max] for x in (tokens, logprobs, entropies, mask))
    tokens = tokens.masked_fill(~mask, pad_token_id)
    logprobs = logprobs.float().masked_fill(~mask, 0.0)
    entropies = entropies.float().masked_fill(~mask, 0.0)
    last = tokens.gather(1, (lengths - 1).clamp(min=0)[:, None])[:, 0]  # (R,)
    stopped = torch.isin(last, stop_ids) & (lengths > 0)
    reasons = ["stop" if s else "length" for s in stopped.tolist()]
    prompt_index = torch.arange(num_prompts, device=tokens.device).repeat_interleave(n)
    return RolloutBatch(
        prompt_index=prompt_index,
        response_ids=tokens,
        response_mask=mask,
        logprobs=logprobs,
        entropies=entropies,
        lengths=lengths,
        finish_reasons=reasons,
    )
