"""Training prompts: load the records, render + tokenize them once, serve step batches.

The batch of step s (1-based) is a pure function of (seed, s): prompts are visited in a
fresh seeded permutation each epoch, so a resumed run sees exactly the prompts an
uninterrupted run would have seen, with nothing to store but the step number.

Prompts longer than `data.max_prompt_length` tokens are skipped (default), truncated from
the left (keeping the question's end and the instruction), or rejected, per
`data.overlong_prompts`; the count is logged as `data/overlong_prompts`.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch

from mgrpo.config import DataConfig
from mgrpo.data.arithmetic import make_problems
from mgrpo.data.benchmarks import BENCHMARKS, load_benchmark
from mgrpo.data.datasets import PromptRecord, load_prompt_dataset
from mgrpo.data.templates import encode_prompts, render_record, uses_chat_template
from mgrpo.lab import lab_task_problems
from mgrpo.models.protocol import Tokenizer
from mgrpo.seeds import SYNTHETIC_VAL_SEED_OFFSET, VAL_SEED_OFFSET, epoch_seed

LAB_TRAIN_SIZE = 4096  # distinct lab-task problems to train on (no repeats within ~500 steps)
LAB_VAL_SIZE = 512  # held-out lab-task problems available to validation (validation.limit cuts)


def load_records(data: DataConfig, source: str, *, split: str, seed: int,
                 dataset_split: str | None = None) -> list[PromptRecord]:
    """Records of `source`: `arithmetic`, `lab`, `lab-val` (the lab validation problems, for
    test-time RL), or anything `load_prompt_dataset` reads.

    `split` is the role ("train" | "val": which synthetic / lab problems); `dataset_split` the
    split of a hub id or of gsm8k (None = `data.split` for train, "test" for val)."""
    if source == "arithmetic":
        syn = data.synthetic
        kwargs = dict(min_operands=syn.min_operands, max_operands=syn.max_operands,
                      min_value=syn.min_value, max_value=syn.max_value, ops=syn.ops)
        train = make_problems(syn.size, seed=seed, **kwargs)
        if split == "train":
            return train
        return make_problems(
            syn.size, seed=seed + SYNTHETIC_VAL_SEED_OFFSET,
            exclude={r.question for r in train}, **kwargs,
        )
    if source == "lab-val" and split == "train":
        # test-time RL: train, without labels, on the validation problems themselves
        return load_records(data, "lab", split="val", seed=seed + VAL_SEED_OFFSET)[: data.limit]
    if source in ("lab", "lab-val"):
        # `data.limit` sizes the lab task's train split (default LAB_TRAIN_SIZE distinct problems)
        n = (data.limit or LAB_TRAIN_SIZE) if split == "train" else LAB_VAL_SIZE
        return lab_task_problems(split=split, n=n, seed=seed)

    if source in BENCHMARKS and source not in ("math500", "gsm8k"):
        # registry names whose data the user supplies (math_train, gpqa, ...): the registry
        # knows where to look ($MGRPO_<NAME>_FILE, $MGRPO_DATA_DIR, the hub) and what to say
        return load_benchmark(source, limit=data.limit, seed=seed)
    return load_prompt_dataset(
        source,
        prompt_field=data.prompt_field,
        answer_field=data.answer_field,
        id_field=data.id_field,
        split=dataset_split or (data.split if split == "train" else "test"),
        limit=data.limit,
    )


def tokenize_prompts(records: list[PromptRecord], tokenizer: Tokenizer, data: DataConfig) -> list[list[int]]:
    """Render each prompt (question or chat messages) with the configured template, system
    prompt and chat-template arguments, and tokenize it."""
    texts = [render_record(r, tokenizer, data.template, data.suffix, system_prompt=data.system_prompt,
                           chat_template_kwargs=data.chat_template_kwargs) for r in records]
    return encode_prompts(texts, tokenizer, chat=uses_chat_template(tokenizer, data.template))


@dataclass
class PromptSet:
    records: list[PromptRecord]
    prompt_ids: list[list[int]]
    seed: int
    overlong: int = 0  # prompts skipped or truncated for length
    _orders: dict[int, torch.Tensor] = field(default_factory=dict, repr=False, compare=False)

    def batch(self, step: int, size: int) -> tuple[list[PromptRecord], list[list[int]]]:
        """The `size` prompts of step `step` (1-based), in a per-epoch seeded order."""
        n = len(self.records)
        picked = []
        for position in range((step - 1) * size, step * size):
            epoch, offset = divmod(position, n)
            picked.append(int(self._order(epoch)[offset]))
        return [self.records[i] for i in picked], [self.prompt_ids[i] for i in picked]

    def _order(self, epoch: int) -> torch.Tensor:
        """The seeded permutation of epoch `epoch` (the last two are kept)."""
        if epoch not in self._orders:
            gen = torch.Generator().manual_seed(epoch_seed(self.seed, epoch))
            self._orders[epoch] = torch.randperm(len(self.records), generator=gen)
            self._orders.pop(epoch - 2, None)
        return self._orders[epoch]


def build_prompt_set(records: list[PromptRecord], tokenizer: Tokenizer, data: DataConfig, *,
                     seed: int) -> PromptSet:
    """Tokenize records and apply the overlong-prompt policy; empty results are an error."""
    if not records:
        raise ValueError(f"data.train={data.train!r}: the dataset is empty")
    ids = tokenize_prompts(records, tokenizer, data)
    limit = data.max_prompt_length
    kept_records, kept_ids, overlong = [], [], 0
    for record, prompt in zip(records, ids):
        if len(prompt) > limit:
            overlong += 1
            if data.overlong_prompts == "error":
                raise ValueError(
                    f"data.train={data.train!r}: prompt {record.id!r} has {len(prompt)} tokens "
                    f"> data.max_prompt_length={limit} (set data.overlong_prompts=skip|truncate)"
                )
            if data.overlong_prompts == "skip":
                continue
            prompt = prompt[-limit:]
        kept_records.append(record)
        kept_ids.append(prompt)
    if not kept_records:
        raise ValueError(
            f"data.train={data.train!r}: all {len(records)} prompts exceed "
            f"data.max_prompt_length={limit} tokens"
        )
    return PromptSet(kept_records, kept_ids, seed, overlong)
