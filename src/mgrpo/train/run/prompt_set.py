"""Training prompts: load the records, render + tokenize them once, serve step batches.

The batch of step s (1-based) is a pure function of (seed, s): prompts are visited in a
fresh seeded permutation each epoch, so a resumed run sees exactly the prompts an
uninterrupted run would have seen, with nothing to store but the step number.

Prompts longer than `data.max_prompt_length` tokens are skipped (default), truncated from
the left (keeping the question's end and the instruction), or rejected, per
`data.overlong_prompts`; the count is logged as `data/overlong_prompts`.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field

import torch

from mgrpo.config import DataConfig
from mgrpo.data.arithmetic import make_problems, rewrite_expression
from mgrpo.data.benchmarks import BENCHMARKS, load_benchmark
from mgrpo.data.datasets import PARAPHRASE, PromptRecord, load_prompt_dataset
from mgrpo.data.templates import encode_prompts, render_record, uses_chat_template
from mgrpo.lab import lab_task_problems
from mgrpo.models.protocol import Tokenizer
from mgrpo.seeds import SYNTHETIC_VAL_SEED_OFFSET, VAL_SEED_OFFSET, epoch_seed

LAB_TRAIN_SIZE = 4096  # distinct lab-task problems to train on (no repeats within ~500 steps)
LAB_VAL_SIZE = 512  # held-out lab-task problems available to validation (validation.limit cuts)
SYNTHETIC_TWIN_SOURCES = ("arithmetic", "lab", "lab-val")  # data.train values with made twins


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
        paraphrase_field=data.paraphrase_field if split == "train" else None,
    )


def with_twins(records: list[PromptRecord], data: DataConfig) -> list[PromptRecord]:
    """The training records, each with its rephrased twin in `meta[PARAPHRASE]` (preset
    co-rewarding-i): the `data.paraphrase_field` column, or for the synthetic tasks
    (`SYNTHETIC_TWIN_SOURCES`, no column set) the expression rewritten with the same value
    (`data.arithmetic.rewrite_expression`: SYNTHETIC twins, operands moved, no language
    model). ValueError naming the key when a record has no twin."""
    if data.paraphrase_field is None and data.train in SYNTHETIC_TWIN_SOURCES:
        return [dataclasses.replace(r, meta={**r.meta, PARAPHRASE: rewrite_expression(r.question)})
                for r in records]
    missing = next((r for r in records if PARAPHRASE not in r.meta), None)
    if missing is None:
        return records
    if data.paraphrase_field is None:
        raise ValueError(
            f"data.paraphrase_field: preset co-rewarding-i rewards each question against the "
            f"vote on its rephrased twin, and data.train={data.train!r} has no twin column: set "
            f"data.paraphrase_field to the column holding the twins (synthetic twins exist only "
            f"for data.train in {', '.join(SYNTHETIC_TWIN_SOURCES)})")
    raise ValueError(
        f"data.paraphrase_field={data.paraphrase_field!r}: data.train={data.train!r} is read "
        f"without that column (row {missing.id!r} has no twin); export the data to a "
        ".jsonl/.parquet/.csv file holding the column")


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
    # co-rewarding-i: the token ids of each record's rephrased twin (None = no twins)
    twin_ids: list[list[int]] | None = None
    _orders: dict[int, torch.Tensor] = field(default_factory=dict, repr=False, compare=False)

    def batch(self, step: int, size: int) -> tuple[list[PromptRecord], list[list[int]]]:
        """The `size` prompts of step `step` (1-based), in a per-epoch seeded order."""
        picked = self._picked(step, size)
        return [self.records[i] for i in picked], [self.prompt_ids[i] for i in picked]

    def twin_batch(self, step: int, size: int) -> list[list[int]]:
        """The token ids of the twins of `batch(step, size)`'s prompts, in the same order."""
        if self.twin_ids is None:
            raise ValueError("this prompt set has no rephrased twins")
        return [self.twin_ids[i] for i in self._picked(step, size)]

    def _picked(self, step: int, size: int) -> list[int]:
        """Record indices of step `step`'s prompts."""
        n = len(self.records)
        picked = []
        for position in range((step - 1) * size, step * size):
            epoch, offset = divmod(position, n)
            picked.append(int(self._order(epoch)[offset]))
        return picked

    def _order(self, epoch: int) -> torch.Tensor:
        """The seeded permutation of epoch `epoch` (the last two are kept)."""
        if epoch not in self._orders:
            gen = torch.Generator().manual_seed(epoch_seed(self.seed, epoch))
            self._orders[epoch] = torch.randperm(len(self.records), generator=gen)
            self._orders.pop(epoch - 2, None)
        return self._orders[epoch]


def build_prompt_set(records: list[PromptRecord], tokenizer: Tokenizer, data: DataConfig, *,
                     seed: int, twins: bool = False) -> PromptSet:
    """Tokenize records and apply the overlong-prompt policy; empty results are an error.

    `twins` (co-rewarding-i): each record's `meta[PARAPHRASE]` is tokenized too, rendered as
    a plain question with the run's template, and the policy applies to the pair (a pair
    with either prompt too long is skipped, truncated or an error)."""
    if not records:
        raise ValueError(f"data.train={data.train!r}: the dataset is empty")
    ids = tokenize_prompts(records, tokenizer, data)
    twin_ids = tokenize_prompts(
        [PromptRecord(r.id, r.meta[PARAPHRASE], r.answer) for r in records], tokenizer, data
    ) if twins else [None] * len(records)
    limit = data.max_prompt_length
    kept_records, kept_ids, kept_twins, overlong = [], [], [], 0
    for record, prompt, twin in zip(records, ids, twin_ids):
        longest = max(len(prompt), len(twin or ()))
        if longest > limit:
            overlong += 1
            if data.overlong_prompts == "error":
                raise ValueError(
                    f"data.train={data.train!r}: prompt {record.id!r}{' or its twin' if twins else ''}"
                    f" has {longest} tokens > data.max_prompt_length={limit} (set "
                    "data.overlong_prompts=skip|truncate)"
                )
            if data.overlong_prompts == "skip":
                continue
            prompt, twin = prompt[-limit:], None if twin is None else twin[-limit:]
        kept_records.append(record)
        kept_ids.append(prompt)
        kept_twins.append(twin)
    if not kept_records:
        raise ValueError(
            f"data.train={data.train!r}: all {len(records)} prompts exceed "
            f"data.max_prompt_length={limit} tokens"
        )
    return PromptSet(kept_records, kept_ids, seed, overlong,
                     twin_ids=kept_twins if twins else None)
