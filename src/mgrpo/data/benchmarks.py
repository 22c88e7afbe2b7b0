"""Benchmark registry: where each evaluation set lives and how a row becomes a prompt.

Each entry of `BENCHMARKS` is a small declarative `Benchmark`: data source, row adapter
(`mgrpo.data.benchmark_rows`), answer kind ("math", "gsm8k", "choice", "code"), prompt
suffix, and the number of samples the paper's protocol uses (avg@8 on AIME24/25 and
GPQA-Diamond, 1 elsewhere).

- Vendored (shipped, offline): math500, aime24, aime25, amc23, gsm8k (test split), mbpp_plus.
- User-supplied (not redistributable): gpqa_diamond, gpqa, mmlu_pro, livecodebench,
  math_train. Looked up, in order, at `--benchmark-file PATH` / `file=`, the environment
  variable `MGRPO_<NAME>_FILE`, then `$MGRPO_DATA_DIR/<name>.{jsonl,json,parquet,csv}`
  (default `~/.cache/mgrpo/data`), then the hub id through the optional `datasets` package.
  Missing data raises one `BenchmarkDataMissing` saying where to put the file and which
  columns it needs.
- `custom_benchmark(path, kind)` makes an entry for any file (`--benchmark-file PATH --kind`).

Multiple choice: the options are shuffled with a per-question seed derived from the
benchmark seed and the question id (sha256, so it is stable across runs and machines),
lettered A.. and the reference is the correct letter. The seed and permutation are
recorded in `record.meta`. Departure from the paper: the paper does not say how GPQA
options were ordered; we shuffle deterministically so the correct answer is not always A.
"""

from __future__ import annotations

import hashlib
import os
import random
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mgrpo.data.benchmark_rows import ADAPTERS, CHOICE_LETTERS
from mgrpo.data.datasets import (
    FILE_SUFFIXES,
    DatasetError,
    PromptRecord,
    _iter_hub,
    read_rows,
    vendored_path,
)
from mgrpo.data.templates import CHOICE_SUFFIX, MATH_SUFFIX

DATA_DIR_ENV = "MGRPO_DATA_DIR"
DEFAULT_DATA_DIR = Path("~/.cache/mgrpo/data")
ANSWER_KINDS = ("math", "gsm8k", "choice", "code")


class BenchmarkDataMissing(DatasetError):
    """A user-supplied benchmark's data could not be found."""


@dataclass(frozen=True)
class Benchmark:
    """One evaluation set.

    source: "vendored:<set>" or "user" (file / env / data dir / hub, see module docstring).
    adapter: name in `ADAPTERS` turning a row into (question, reference, meta).
    kind: answer kind used for extraction and checking. suffix: appended to the question.
    columns: the columns a user file must have (shown when the data is missing).
    """

    name: str
    kind: str
    source: str
    adapter: str
    description: str
    suffix: str | None = MATH_SUFFIX
    paper_samples: int = 1
    id_field: str | None = None
    hub_id: str | None = None
    hub_split: str = "test"
    columns: str = ""

    def __post_init__(self) -> None:
        if self.kind not in ANSWER_KINDS:
            raise ValueError(f"benchmark {self.name}: kind {self.kind!r}; valid: {ANSWER_KINDS}")
        if self.adapter not in ADAPTERS:
            raise ValueError(
                f"benchmark {self.name}: adapter {self.adapter!r}; valid: {sorted(ADAPTERS)}"
            )


_CHOICE_COLUMNS = (
    "GPQA's own columns (Question, Correct Answer, Incorrect Answer 1..3), or question, "
    "options (list, or a JSON list string in CSV), answer (letter, 0-based index or option text)"
)
_MMLU_PRO_COLUMNS = (
    "MMLU-Pro's own columns: question, options (a list of up to 10, or a JSON list string in "
    "CSV), answer (letter A-J, a 0-based index or the option's text), question_id"
)

BENCHMARKS: dict[str, Benchmark] = {
    b.name: b
    for b in (
        Benchmark(
            "math500",
            "math",
            "vendored:math500",
            "math",
            "MATH-500 (PRM800K subset)",
            id_field="unique_id",
        ),
        Benchmark("aime24", "math", "vendored:aime24", "math", "AIME 2024 I+II", paper_samples=8),
        Benchmark("aime25", "math", "vendored:aime25", "math", "AIME 2025 I+II", paper_samples=8),
        Benchmark("amc23", "math", "vendored:amc23", "math", "AMC 2023"),
        Benchmark("gsm8k", "gsm8k", "vendored:gsm8k_test", "gsm8k", "GSM8K test split"),
        Benchmark(
            "mbpp_plus",
            "code",
            "vendored:mbppplus",
            "mbpp_plus",
            "MBPP+ (EvalPlus)",
            suffix=None,
            id_field="task_id",
        ),
        Benchmark(
            "gpqa_diamond",
            "choice",
            "user",
            "choice",
            "GPQA-Diamond (198 questions)",
            suffix=CHOICE_SUFFIX,
            paper_samples=8,
            hub_id="Idavidrein/gpqa:gpqa_diamond",
            hub_split="train",
            id_field="Record ID",
            columns=_CHOICE_COLUMNS,
        ),
        Benchmark(
            "gpqa",
            "choice",
            "user",
            "choice",
            "GPQA main (448 questions)",
            suffix=CHOICE_SUFFIX,
            hub_id="Idavidrein/gpqa:gpqa_main",
            hub_split="train",
            id_field="Record ID",
            columns=_CHOICE_COLUMNS,
        ),
        Benchmark(
            "mmlu_pro",
            "choice",
            "user",
            "choice",
            "MMLU-Pro (test split)",
            suffix=CHOICE_SUFFIX,
            hub_id="TIGER-Lab/MMLU-Pro",
            id_field="question_id",
            columns=_MMLU_PRO_COLUMNS,
        ),
        Benchmark(
            "livecodebench",
            "code",
            "user",
            "livecodebench",
            "LiveCodeBench code generation",
            suffix=None,
            hub_id="livecodebench/code_generation_lite",
            id_field="question_id",
            columns=(
                "question_content, starter_code (may be empty), public_test_cases and "
                "private_test_cases (JSON lists of {input, output, testtype}), metadata, question_id"
            ),
        ),
        Benchmark(
            "math_train",
            "math",
            "user",
            "math_train",
            "MATH train split (7.5k problems)",
            hub_id="DigitalLearningGmbH/MATH-lighteval",
            hub_split="train",
            columns="problem, and answer or solution (final answer in \\boxed{})",
        ),
    )
}


def get_benchmark(name: str) -> Benchmark:
    if name not in BENCHMARKS:
        raise ValueError(f"unknown benchmark {name!r}; valid: {', '.join(BENCHMARKS)}")
    return BENCHMARKS[name]


def custom_benchmark(path: str | os.PathLike[str], kind: str) -> Benchmark:
    """An entry for a user file evaluated as `kind` (math | gsm8k | choice | code).

    Columns: math — problem (or question), answer; choice — see `_CHOICE_COLUMNS`;
    code — MBPP+ rows (task_id, prompt, entry_point, ...) or LiveCodeBench rows.
    An `id` column is used as the problem id when present.
    """
    if kind not in ANSWER_KINDS:
        raise ValueError(f"--kind {kind!r}; valid: {', '.join(ANSWER_KINDS)}")
    return Benchmark(
        Path(path).stem,
        kind,
        f"file:{os.fspath(path)}",
        kind,
        f"custom {kind} set from {path}",
        suffix={"math": MATH_SUFFIX, "gsm8k": MATH_SUFFIX, "choice": CHOICE_SUFFIX}.get(kind),
        id_field="id",
    )


# ---------------------------------------------------------------------------- loading


def _env_var(name: str) -> str:
    return f"MGRPO_{name.upper()}_FILE"


def data_dir() -> Path:
    return Path(os.environ.get(DATA_DIR_ENV, DEFAULT_DATA_DIR)).expanduser()


def _missing_message(bench: Benchmark, reason: str) -> str:
    where = data_dir() / f"{bench.name}.jsonl"
    hub = (
        f" or `pip install datasets` with network access to fetch {bench.hub_id}"
        if bench.hub_id
        else ""
    )
    return (
        f"benchmark {bench.name!r} ({bench.description}) has no data here: {reason}. Put a "
        f"{'/'.join(s.lstrip('.') for s in FILE_SUFFIXES)} file at {where} (or set {DATA_DIR_ENV}), "
        f"or set {_env_var(bench.name)}=PATH, or pass --benchmark-file PATH{hub}. "
        f"Required columns: {bench.columns}"
    )


def _user_rows(
    bench: Benchmark, file: str | os.PathLike[str] | None
) -> Iterator[tuple[str, dict[str, Any]]]:
    if file is not None:
        return read_rows(file)
    env = os.environ.get(_env_var(bench.name))
    if env:
        if not Path(env).expanduser().is_file():
            raise BenchmarkDataMissing(
                _missing_message(bench, f"{_env_var(bench.name)}={env} is not a file")
            )
        return read_rows(Path(env).expanduser())
    for suffix in FILE_SUFFIXES:
        candidate = data_dir() / f"{bench.name}{suffix}"
        if candidate.is_file():
            return read_rows(candidate)
    if bench.hub_id is None:
        raise BenchmarkDataMissing(_missing_message(bench, "no file found"))
    try:
        import datasets  # noqa: F401
    except ImportError:
        raise BenchmarkDataMissing(
            _missing_message(bench, "no file found and the `datasets` package is not installed")
        ) from None

    try:
        rows = list(_iter_hub(bench.hub_id, bench.hub_split))
    except DatasetError as exc:
        raise BenchmarkDataMissing(_missing_message(bench, f"no file found and {exc}")) from exc
    return iter(rows)


def question_seed(seed: int, problem_id: str) -> int:
    """Per-question shuffle seed: first 8 bytes of sha256(f"{seed}:{id}") (stable everywhere)."""
    digest = hashlib.sha256(f"{seed}:{problem_id}".encode()).digest()
    return int.from_bytes(digest[:8], "big")


def format_choices(question: str, options: list[str]) -> str:
    lines = [f"({CHOICE_LETTERS[i]}) {option}" for i, option in enumerate(options)]
    return question.strip() + "\n\n" + "\n".join(lines)


def shuffle_choice(
    problem_id: str, question: str, meta: dict[str, Any], seed: int, shuffle: bool
) -> tuple[str, str, dict[str, Any]]:
    """Shuffle the options of one multiple-choice question; returns (text, letter, meta)."""
    options, correct = meta["options"], meta["correct_index"]
    qseed = question_seed(seed, problem_id)
    permutation = list(range(len(options)))
    if shuffle:
        random.Random(qseed).shuffle(permutation)
    shown = [options[i] for i in permutation]  # shown[j] = original option permutation[j]
    letter = CHOICE_LETTERS[permutation.index(correct)]
    new_meta = {"choice_seed": qseed, "permutation": permutation, "options": shown}
    return format_choices(question, shown), letter, new_meta


def load_benchmark(
    benchmark: str | Benchmark,
    *,
    file: str | os.PathLike[str] | None = None,
    limit: int | None = None,
    seed: int = 0,
    shuffle_choices: bool = True,
) -> list[PromptRecord]:
    """Records of a benchmark, questions ready for `render_prompt(..., suffix=bench.suffix)`.

    `file` overrides the data location of a user-supplied benchmark. `seed` drives the
    per-question option shuffle of multiple-choice sets. Duplicate ids raise DatasetError.
    """
    bench = get_benchmark(benchmark) if isinstance(benchmark, str) else benchmark
    if limit is not None and limit < 1:
        raise ValueError(f"limit must be >= 1 or None, got {limit}")
    if bench.source.startswith("vendored:"):
        rows: Iterator[tuple[str, dict[str, Any]]] = read_rows(
            file or vendored_path(bench.source.split(":", 1)[1])
        )
    elif bench.source.startswith("file:"):
        rows = read_rows(file or bench.source.split(":", 1)[1])
    else:
        rows = _user_rows(bench, file)
    adapter = ADAPTERS[bench.adapter]
    records: list[PromptRecord] = []
    seen: dict[str, str] = {}
    for index, (where, row) in enumerate(rows):
        if limit is not None and len(records) >= limit:
            break
        if (
            bench.id_field is not None
            and bench.id_field in row
            and row[bench.id_field] not in (None, "")
        ):
            pid = str(row[bench.id_field])
        else:
            pid = f"{bench.name}-{index}"
        if pid in seen:
            raise DatasetError(f"{where}: duplicate problem id {pid!r} (first seen at {seen[pid]})")
        seen[pid] = where
        question, reference, meta = adapter(row, where)
        if "options" in meta:
            question, reference, meta = shuffle_choice(pid, question, meta, seed, shuffle_choices)
        records.append(PromptRecord(id=pid, question=question, answer=reference, meta=meta))
    if not records:
        raise DatasetError(f"benchmark {bench.name}: no rows")
    return records
