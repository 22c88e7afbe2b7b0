"""`hf` engine: the reference. `model.generate` for tokens, then ONE `score_responses` pass.

Simple and obviously right: prompts are repeated n times (prompt-major), left-padded,
and sampled by Hugging Face with explicit sampling arguments (so a model's own
generation_config cannot add repetition penalties etc.), seeded with `torch.manual_seed`
inside `fork_rng` (the caller's RNG state is untouched). Log-probs and entropies come from
a teacher-forced scoring pass at the sampling temperature; for greedy decoding (T = 0)
they are those of softmax(logits) (T = 1).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from mgrpo.rollout.base import ENGINES, RolloutEngine
from mgrpo.rollout.batch import RolloutBatch, finalize_batch
from mgrpo.rollout.params import SamplingParams


def left_pad(prompts: list[list[int]], pad_token_id: int, device: torch.device):
    """ids (B, L) and attention mask (B, L) for left-padded prompts."""
    width = max(len(p) for p in prompts)
    ids = torch.full((len(prompts), width), pad_token_id, dtype=torch.long)
    attn = torch.zeros((len(prompts), width), dtype=torch.long)
    for i, p in enumerate(prompts):
        ids[i, width - len(p) :] = torch.tensor(p, dtype=torch.long)
        attn[i, width - len(p) :] = 1
    return ids.to(device), attn.to(device)


def mask_through_first_stop(tokens: torch.Tensor, stop_ids: torch.Tensor) -> torch.Tensor:
    """(R, T) bool: True up to and including each row's first stop token (all True if none)."""
    is_stop = torch.isin(tokens, stop_ids).long()  # (R, T)
    return (is_stop.cumsum(1) - is_stop) == 0


@ENGINES.register("hf")
class HFEngine(RolloutEngine):
    name = "hf"

    def generate(
        self, prompt_token_ids: Sequence[Sequence[int]], n: int, params: SamplingParams
    ) -> RolloutBatch:
        prompts = self._check_call(prompt_token_ids, n, params)
        device = self.device
        repeated = [p for p in prompts for _ in range(n)]  # prompt-major
        ids, attn = left_pad(repeated, self.pad_token_id, device)
        stop = self.stop_ids(params)
        kwargs = dict(
            max_new_tokens=params.max_new_tokens,
            min_new_tokens=0,
            num_beams=1,
            do_sample=not params.greedy,
            temperature=params.scoring_temperature,
            top_p=params.top_p,
            top_k=params.top_k,
            repetition_penalty=1.0,
            no_repeat_ngram_size=0,
            pad_token_id=self.pad_token_id,
            eos_token_id=list(stop) if stop else None,
        )
        if params.greedy:  # sampling knobs are irrelevant; avoid HF warnings about them
            kwargs.update(temperature=None, top_p=None, top_k=None)
        fork_devices = [device] if device.type == "cuda" else []
        with torch.no_grad(), torch.random.fork_rng(devices=fork_devices):
            torch.manual_seed(params.seed)
            out = self.model.generate(input_ids=ids, attention_mask=attn, **kwargs)
        tokens = out[:, ids.shape[1] :]  # (R, T')
        stop_t = torch.tensor(stop, dtype=torch.long, device=device)
        mask = mask_through_first_stop(tokens, stop_t)
        logp, ent = self.score(repeated, tokens, mask, params.scoring_temperature)
        return finalize_batch(
            tokens,
            logp,
            ent,
            mask,
            stop_ids=stop_t,
            n=n,
            num_prompts=len(prompts),
            pad_token_id=self.pad_token_id,
        )
