"""Measure a lab model on arithmetic problems: mean sample accuracy and maj@G.

For each problem, G responses are sampled with HF `model.generate` (pure temperature
sampling, no top-k/top-p) from the prompt rendered with the lab template; the answer of
a response is the integer inside its last `\\boxed{...}` (None if there is none or it is
not an integer); correctness is exact integer equality with the reference.

- sample accuracy = mean over problems and samples of correct (avg@G);
- maj@G = fraction of problems whose majority answer (docs/design.md §3 vote: unparsed answers
  excluded, tie -> the answer seen first, empty pool -> wrong) is correct.
The gap maj@G - sample accuracy is the signal label-free RL can amplify.
"""

from __future__ import annotations

import operator
import re
from collections.abc import Sequence
from typing import Any

import torch

from mgrpo.core.voting import majority_vote
from mgrpo.data.datasets import PromptRecord

BOXED_INT = re.compile(r"\\boxed\{\s*(-?\d+)\s*\}")
GENERATION_CHUNK = 512  # sequences per generate() call (bounds memory, keeps batches large)


def extract_boxed_int(text: str) -> int | None:
    """Integer inside the last ``\\boxed{...}`` of `text`; None if absent or not an integer."""
    matches = BOXED_INT.findall(text)
    return int(matches[-1]) if matches else None


def majority_answer(answers: Sequence[int | None]) -> int | None:
    """Most frequent non-None answer; ties go to the answer that appeared first; None if none.

    The vote of training and evaluation (`majority_vote`) with exact equality of integers.
    """
    vote = majority_vote([None if a is None else str(a) for a in answers], operator.eq)
    return None if vote.label is None else int(vote.label)


def sample_responses(
    model: Any,
    tokenizer: Any,
    prompts: Sequence[str],
    *,
    samples: int,
    temperature: float,
    max_new_tokens: int,
    seed: int,
) -> list[list[str]]:
    """`samples` sampled completions per prompt (decoded, special tokens dropped).

    Prompts are left-padded in chunks of GENERATION_CHUNK sequences; sampling draws from
    the global torch RNG inside a fork seeded with `seed` (the caller's RNG is untouched).
    Returns one list of `samples` strings per prompt, in prompt order.
    """
    if samples < 1 or temperature <= 0:
        raise ValueError(f"need samples >= 1 and temperature > 0, got {samples}, {temperature}")
    flat = [p for p in prompts for _ in range(samples)]  # prompt-major
    texts: list[str] = []
    was_training = model.training
    model.eval()
    with torch.random.fork_rng(devices=[]), torch.no_grad():
        torch.manual_seed(seed)
        for start in range(0, len(flat), GENERATION_CHUNK):
            chunk = flat[start : start + GENERATION_CHUNK]
            enc = tokenizer(chunk, return_tensors="pt", padding=True, add_special_tokens=False)
            out = model.generate(
                input_ids=enc["input_ids"],  # (C, P) left-padded
                attention_mask=enc["attention_mask"],
                do_sample=True,
                temperature=temperature,
                top_k=0,
                top_p=1.0,
                max_new_tokens=max_new_tokens,
                eos_token_id=tokenizer.eos_token_id,
                pad_token_id=tokenizer.pad_token_id,
            )
            texts += tokenizer.batch_decode(out[:, enc["input_ids"].shape[1] :],
                                            skip_special_tokens=True)
    model.train(was_training)
    return [texts[i * samples : (i + 1) * samples] for i in range(len(prompts))]


def measure_accuracy(
    model: Any,
    tokenizer: Any,
    records: Sequence[PromptRecord],
    *,
    template: str,
    samples: int,
    temperature: float,
    max_new_tokens: int,
    seed: int = 0,
) -> dict[str, float]:
    """Mean sample accuracy and maj@`samples` of `model` on `records` (answers required).

    Returns {"sample_accuracy", "maj_accuracy", "maj_minus_sample", "answer_rate" (fraction
    of samples with a parsable boxed integer), "n_problems", "samples", "temperature"}.
    """
    if not records:
        raise ValueError("measure_accuracy needs at least one record")
    for record in records:
        if record.answer is None:
            raise ValueError(f"record {record.id!r} has no answer to measure against")
    prompts = [template.replace("{question}", r.question) for r in records]
    responses = sample_responses(model, tokenizer, prompts, samples=samples,
                                 temperature=temperature, max_new_tokens=max_new_tokens, seed=seed)
    correct = parsed = majority_correct = 0
    for record, texts in zip(records, responses):
        reference = int(record.answer)
        answers = [extract_boxed_int(t) for t in texts]
        parsed += sum(a is not None for a in answers)
        correct += sum(a == reference for a in answers)
        majority_correct += majority_answer(answers) == reference
    total = len(records) * samples
    sample_acc = correct / total
    maj_acc = majority_correct / len(records)
    return {
        "sample_accuracy": sample_acc,
        "maj_accuracy": maj_acc,
        "maj_minus_sample": maj_acc - sample_acc,
        "answer_rate": parsed / total,
        "n_problems": len(records),
        "samples": samples,
        "temperature": temperature,
    }
