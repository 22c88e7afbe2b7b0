"""Run an evaluation: render prompts, sample through a rollout engine, grade, summarise.

`evaluate_records` is the one code path shared by `mgrpo eval` and the trainer's periodic
validation, so a training curve and `mgrpo eval` agree on a checkpoint.

Pipeline per batch of prompts: `render_prompt` -> tokenize -> `engine.generate(ids, n=k)`
(prompt-major, k samples per prompt) -> hand the batch to ONE helper thread and start
generating the next batch (whose prompts the helper tokenized meanwhile). The helper owns
the tokenizer, so it is never used from two threads at once. Grading a batch = decode,
extract answers, check them in
one call (`AnswerChecker.equivalent_many`: one round trip to the worker pool with hard
timeouts, so a pathological answer cannot stall the run), vote per problem (`majority_vote`
over equivalences computed in one batch) — or, for code, run each sample in the sandbox
(threads, `CODE_WORKERS`). Then `metrics.summarize`.

Timing: `time/generate` is the wall time inside `engine.generate` only; `time/total` the
whole call; their difference is the harness's own overhead (`overhead_report`).
`time/grade` is the total grading time, `time/grade_wait` the part not hidden behind
generation (the last batch, or all of it when grading is slower than generation).
"""

from __future__ import annotations

import dataclasses
import os
import time
from collections.abc import Callable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any

from mgrpo.answers import AnswerChecker, extract_answer
from mgrpo.answers.equivalence import Equivalence
from mgrpo.checks import check_int
from mgrpo.data.benchmarks import get_benchmark, load_benchmark
from mgrpo.data.datasets import PromptRecord
from mgrpo.data.templates import (
    CHOICE_SUFFIX,
    MATH_SUFFIX,
    encode_prompts,
    render_record,
    uses_chat_template,
)
from mgrpo.eval import sandbox
from mgrpo.eval.metrics import summarize
from mgrpo.eval.sandbox import extract_code
from mgrpo.progress import progress as progress_display

EVAL_KINDS = ("math", "gsm8k", "number", "choice", "code")
DEFAULT_SUFFIX = {
    "math": MATH_SUFFIX,
    "gsm8k": MATH_SUFFIX,
    "number": MATH_SUFFIX,
    "choice": CHOICE_SUFFIX,
    "code": None,
}
DEFAULT_BATCH_SIZE = 64  # prompts per engine.generate call (x samples rollouts)
CODE_WORKERS = max(1, min(8, os.cpu_count() or 1))
AUTO = "auto"


def _sync_device() -> None:
    """Wait for queued GPU work so generation time is not billed to the next stage."""
    try:
        # lazy, start-up: this module imports without torch (`mgrpo --help`)
        import torch
    except ImportError:  # pragma: no cover
        return
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        torch.cuda.synchronize()


@dataclasses.dataclass
class _Outputs:
    """What grading needs from a RolloutBatch, copied off the engine's buffers."""

    response_ids: Any  # (R, T) long, CPU
    lengths: Any  # (R,) long, CPU
    finish_reasons: list[str]


def _decode(batch: _Outputs, tokenizer: Any) -> tuple[list[str], list[int], list[str]]:
    lengths = batch.lengths.tolist()
    ids = batch.response_ids.tolist()
    seqs = [row[:length] for row, length in zip(ids, lengths, strict=True)]
    texts = tokenizer.batch_decode(seqs, skip_special_tokens=True)
    return texts, lengths, list(batch.finish_reasons)


def _grade_code(
    responses: list[str], records: list[PromptRecord], k: int
) -> tuple[list[bool], list[dict[str, Any]]]:
    graders = {"mbpp_plus": sandbox.grade_mbpp_plus, "livecodebench": sandbox.grade_livecodebench}

    def grade(index: int) -> Any:
        record = records[index // k]
        grader = record.meta.get("grader")
        if grader not in graders or "row" not in record.meta:
            raise ValueError(
                f"problem {record.id}: code records need meta['grader'] in {sorted(graders)} and meta['row']"
            )
        return graders[grader](responses[index], record.meta["row"])

    with ThreadPoolExecutor(max_workers=CODE_WORKERS) as pool:
        verdicts = list(pool.map(grade, range(len(responses))))
    details = [{"status": v.status, "detail": v.detail, "n_tests": v.n_tests} for v in verdicts]
    return [bool(v.passed) for v in verdicts], details


def _grade_answers(
    extracted: list[str | None], references: list[str | None], kind: str, checker: Any
) -> list[bool]:
    """Correctness of every extracted answer against its reference, one batched call."""
    if kind == "choice":
        return [
            p is not None and r is not None and p.strip().upper() == r.strip().upper()
            for p, r in zip(extracted, references, strict=True)
        ]
    todo = [
        i
        for i, (p, r) in enumerate(zip(extracted, references, strict=True))
        if p is not None and r is not None
    ]
    verdicts = (
        checker.equivalent_many([(references[i], extracted[i]) for i in todo]) if todo else []
    )
    correct = [False] * len(extracted)
    for i, ok in zip(todo, verdicts, strict=True):
        correct[i] = bool(ok)
    return correct


def _majority(
    extracted: list[str | None], correct: list[bool], k: int, kind: str, checker: Any
) -> list[bool]:
    """maj@k per problem: is the majority-voted answer (docs/design.md §3 clustering) correct?

    The label is the winning cluster's representative, itself one of the samples, so its
    correctness is that sample's. Equivalences between distinct answers of a problem are
    computed in one batch first (`Equivalence.prefetch`); the vote then reads them from the memo.
    """
    # lazy, start-up: the target imports torch
    from mgrpo.core.voting import vote_groups

    groups = [extracted[p * k : (p + 1) * k] for p in range(len(extracted) // k)]
    equivalent = Equivalence.for_kind(checker, kind)
    if k > 1:
        equivalent.prefetch(groups)
    votes = vote_groups(groups, equivalent)
    return [
        vote.label is not None and correct[p * k + group.index(vote.label)]
        for p, (group, vote) in enumerate(zip(groups, votes))
    ]


@dataclasses.dataclass
class _Graded:
    responses: list[str]
    lengths: list[int]
    finish: list[str]
    extracted: list[str | None]
    correct: list[bool]
    majority: list[bool]
    details: list[dict[str, Any]]
    seconds: float


def _grade_batch(
    batch: _Outputs, tokenizer: Any, records: list[PromptRecord], kind: str, k: int, checker: Any
) -> _Graded:
    """Decode, extract, check and vote for one batch of problems (k rollouts each, prompt-major)."""
    t0 = time.perf_counter()
    texts, lengths, finish = _decode(batch, tokenizer)
    if kind == "code":
        extracted = [extract_code(text) for text in texts]
        correct, details = _grade_code(texts, records, k)
        majority: list[bool] = []
    else:
        extracted = [extract_answer(text, kind) for text in texts]
        references = [r.answer for r in records for _ in range(k)]
        correct = _grade_answers(extracted, references, kind, checker)
        majority = _majority(extracted, correct, k, kind, checker)
        details = [{} for _ in texts]
    seconds = time.perf_counter() - t0
    return _Graded(texts, lengths, finish, extracted, correct, majority, details, seconds)


def evaluate_records(
    engine: Any,
    tokenizer: Any,
    records: Sequence[PromptRecord],
    *,
    kind: str,
    samples: int,
    params: Any,
    template: str = "default",
    checker: Any = None,
    suffix: str | None = AUTO,
    batch_size: int = DEFAULT_BATCH_SIZE,
    progress: bool = False,
    desc: str = "eval",
    sample_rows: list[dict[str, Any]] | None = None,
    max_prompt_tokens: int | None = None,
    system_prompt: str | None = None,
    chat_template_kwargs: dict[str, Any] | None = None,
    shard: tuple[int, int] = (0, 1),
    gather: Callable[[Any], list[Any]] | None = None,
) -> dict[str, Any]:
    """Sample `samples` responses per record and grade them against `record.answer`.

    kind: "math" | "gsm8k" | "number" | "choice" (answer extracted with that kind) or
    "code" (records carry meta["grader"] and meta["row"], graded in the sandbox).
    params: `mgrpo.rollout.SamplingParams`; batch b uses seed `params.seed + b` so batches
    do not replay the same random stream. checker: an `AnswerChecker` (one is created and
    closed here when None). suffix: the prompt suffix ("auto": by kind). `sample_rows`,
    when a list, receives one dict per sample (problem_id, prompt, response, extracted,
    reference, correct, ...). `max_prompt_tokens`: a longer prompt keeps its LAST
    max_prompt_tokens tokens (the instruction and generation prompt survive) and is counted
    in `prompts_truncated`; None = no limit (the engine rejects prompts beyond the context).
    `system_prompt`, `chat_template_kwargs`: as in `mgrpo.data.templates.render_record`.
    `shard=(rank, world)` runs only batches b with b % world == rank (each with its own seed
    `params.seed + b`, so a problem's samples do not depend on the split) and `gather` (every
    rank's picklable partial results -> the list of all ranks') joins them before the
    metrics: every rank returns the metrics of the whole set, equal to one process's. With
    fewer batches than ranks the extra ranks only wait. Timings are this rank's own.

    Returns {accuracy (= avg@k), avg@k, maj@k (None for code), pass@1..pass@k, pass@k,
    n_problems, samples, response_length_mean, length_finish_fraction, prompts_truncated,
    time/generate, time/grade, time/grade_wait, time/total}. Raises ValueError for an unknown
    kind, samples < 1, no records, or (non-code) records without an answer.
    """
    t_start = time.perf_counter()
    if kind not in EVAL_KINDS:
        raise ValueError(f"kind={kind!r}; valid: {', '.join(EVAL_KINDS)}")
    check_int(samples, "samples", low=1)
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    if max_prompt_tokens is not None and max_prompt_tokens < 1:
        raise ValueError(f"max_prompt_tokens must be >= 1 or None, got {max_prompt_tokens}")
    records = list(records)
    if not records:
        raise ValueError("records is empty: nothing to evaluate")
    if kind != "code":
        missing = [r.id for r in records if r.answer is None]
        if missing:
            raise ValueError(
                f"{len(missing)} records have no reference answer (first: {missing[0]!r})"
            )
    suffix = DEFAULT_SUFFIX[kind] if suffix == AUTO else suffix
    k = samples
    rank, world = shard
    if not 0 <= rank < world:
        raise ValueError(f"shard must be (rank, world) with 0 <= rank < world, got {shard}")

    prompts = [render_record(r, tokenizer, template, suffix, system_prompt=system_prompt,
                             chat_template_kwargs=chat_template_kwargs) for r in records]
    chat = uses_chat_template(tokenizer, template)
    t_generate = 0.0
    truncated = 0
    own_checker = None
    if checker is None and kind not in ("choice", "code"):
        checker = own_checker = AnswerChecker()
    bar = None
    if progress:
        bar = progress_display(len(records), desc=desc, unit="problem")
    pending: list[Future[_Graded]] = []
    order: list[int] = []  # batch number of each pending grade
    try:
        # ONE helper thread owns the tokenizer (never used from two threads at once): it
        # tokenizes batch b+1 and decodes + grades batch b while the engine generates, so
        # only the first batch's tokenization and the last batch's grading add wall time.
        with ThreadPoolExecutor(max_workers=1, thread_name_prefix="mgrpo-eval") as helper:
            # this rank's (batch number, first record) pairs
            mine = list(enumerate(range(0, len(records), batch_size)))[rank::world]
            starts = [start for _, start in mine]
            next_ids = None
            if starts:
                first = prompts[starts[0] : starts[0] + batch_size]
                next_ids = helper.submit(encode_prompts, first, tokenizer, chat=chat)
            for i, (b, start) in enumerate(mine):
                chunk = prompts[start : start + batch_size]
                ids = next_ids.result()
                if i + 1 < len(starts):
                    following = prompts[starts[i + 1] : starts[i + 1] + batch_size]
                    next_ids = helper.submit(encode_prompts, following, tokenizer, chat=chat)
                if max_prompt_tokens is not None:
                    truncated += sum(len(p) > max_prompt_tokens for p in ids)
                    ids = [p[-max_prompt_tokens:] for p in ids]
                batch_params = dataclasses.replace(params, seed=params.seed + b)
                t0 = time.perf_counter()
                batch = engine.generate(ids, n=k, params=batch_params)
                _sync_device()
                t_generate += time.perf_counter() - t0
                if batch.num_rollouts != len(chunk) * k:
                    raise RuntimeError(
                        f"engine returned {batch.num_rollouts} rollouts for {len(chunk)} prompts x {k}"
                    )
                # a private CPU copy: an engine may reuse its output buffers for the next batch
                snapshot = _Outputs(
                    batch.response_ids.to("cpu", copy=True),
                    batch.lengths.to("cpu", copy=True),
                    list(batch.finish_reasons),
                )
                problems = records[start : start + batch_size]
                order.append(b)
                pending.append(
                    helper.submit(_grade_batch, snapshot, tokenizer, problems, kind, k, checker)
                )
                if bar is not None:
                    bar.update(len(chunk))
            t_wait = time.perf_counter()
            graded = [future.result() for future in pending]
            wait_s = time.perf_counter() - t_wait
            if gather is not None:  # every rank's batches, in batch order
                parts = gather((list(zip(order, graded)), truncated))
                truncated = sum(t for _, t in parts)
                graded = [g for _, g in sorted((x for part, _ in parts for x in part),
                                               key=lambda x: x[0])]
    finally:
        for future in pending:
            future.cancel()
        if bar is not None:
            bar.close()
        if own_checker is not None:
            own_checker.close()
    responses = [x for g in graded for x in g.responses]
    lengths = [x for g in graded for x in g.lengths]
    finish = [x for g in graded for x in g.finish]
    extracted = [x for g in graded for x in g.extracted]
    correct = [x for g in graded for x in g.correct]
    details = [x for g in graded for x in g.details]
    majority = None if kind == "code" else [x for g in graded for x in g.majority]
    grade_s = sum(g.seconds for g in graded)

    if sample_rows is not None:
        for i, text in enumerate(responses):
            record = records[i // k]
            row = {
                "problem_id": record.id,
                "sample": i % k,
                "prompt": prompts[i // k],
                "response": text,
                "extracted": extracted[i],
                "reference": record.answer,
                "correct": correct[i],
                "length": lengths[i],
                "finish_reason": finish[i],
            }
            if "choice_seed" in record.meta:
                row["choice_seed"] = record.meta["choice_seed"]
                row["permutation"] = record.meta["permutation"]
            row.update(details[i])
            sample_rows.append(row)

    metrics = summarize([correct[p * k : (p + 1) * k] for p in range(len(records))], majority)
    metrics["response_length_mean"] = sum(lengths) / len(lengths)
    metrics["length_finish_fraction"] = sum(r == "length" for r in finish) / len(finish)
    metrics["prompts_truncated"] = truncated
    metrics["time/generate"] = t_generate
    metrics["time/grade"] = grade_s  # total grading time, mostly hidden behind generation
    metrics["time/grade_wait"] = wait_s  # grading time not hidden (waited for at the end)
    metrics["time/total"] = time.perf_counter() - t_start
    return metrics


def overhead_report(wall_s: float, generate_s: float) -> dict[str, float]:
    """The harness's own cost: overhead_s = wall_s - generate_s and its share of wall_s."""
    if wall_s <= 0 or generate_s < 0:
        raise ValueError(f"need wall_s > 0 and generate_s >= 0, got {wall_s}, {generate_s}")
    overhead = max(0.0, wall_s - generate_s)
    return {
        "wall_s": wall_s,
        "generate_s": generate_s,
        "overhead_s": overhead,
        "overhead_fraction": overhead / wall_s,
    }


def evaluate_benchmark(
    engine: Any,
    tokenizer: Any,
    benchmark: Any,
    *,
    params: Any,
    samples: int | None = None,
    limit: int | None = None,
    file: str | None = None,
    records: Sequence[PromptRecord] | None = None,
    load_s: float = 0.0,
    seed: int = 0,
    sample_rows: list[dict[str, Any]] | None = None,
    **options: Any,
) -> dict[str, Any]:
    """Run `evaluate_records` on a registered benchmark (name or `Benchmark`).

    The data come from `records` when given (already loaded, e.g. by `mgrpo eval`, which
    reads every set before it loads the model; `load_s` is what that load took), else from
    `load_benchmark(bench, file=file, limit=limit, seed=seed)`, timed here. samples=None uses
    the benchmark's paper sample count. `options` go to `evaluate_records` (template,
    checker, batch_size, progress, max_prompt_tokens, system_prompt, chat_template_kwargs);
    kind, suffix and the progress label come from the benchmark.

    Returns evaluate_records' metrics plus benchmark, time/load and `overhead_report` of
    wall_s = load + evaluation.
    """
    t0 = time.perf_counter()
    bench = get_benchmark(benchmark) if isinstance(benchmark, str) else benchmark
    if records is None:
        records = load_benchmark(bench, file=file, limit=limit, seed=seed)
        load_s = time.perf_counter() - t0
        t0 = time.perf_counter()
    options.setdefault("progress", True)
    metrics = evaluate_records(
        engine,
        tokenizer,
        records,
        kind=bench.kind,
        samples=samples or bench.paper_samples,
        params=params,
        suffix=bench.suffix,
        desc=bench.name,
        sample_rows=sample_rows,
        **options,
    )
    wall = time.perf_counter() - t0 + load_s
    report = overhead_report(wall, metrics["time/generate"])
    return {"benchmark": bench.name, **metrics, "time/load": load_s, **report}
