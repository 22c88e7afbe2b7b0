"""The samples log: `samples.jsonl` in the run directory, what the model wrote at every K-th step.

One JSON line per prompt of a logged step (`trainer.log_samples_every: K`; steps K, 2K, ...):

    {"step": int, "prompt": str, "label": str | null, "truth": str | null,
     "rollouts": [{"source": "policy" | "momentum", "text": str, "answer": str | null,
                   "reward": float | null, "entropy": float, "kept": bool}, ...]}

`label` is the pseudo-label (the vote's winner; null when there is no vote or no winner),
`truth` the data set's answer when it has one. `rollouts` are in pool order: the policy's
rollouts (train ones, then vote-only ones), then the momentum model's. `reward` is the
reward of a train rollout, null for rollouts that only vote; `entropy` the trajectory
entropy; `kept` the IQR keep flag (True when the filter is off).

Written by rank 0 from the gathered records. A step's lines go out in one `write` call,
flushed and fsynced, so a kill loses at most that step's last lines; a partial last line is
skipped when read and dropped by `truncate_after`. On resume `truncate_after(step)` drops the
lines of steps a resumed run will redo, and `write` never writes a step twice.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from mgrpo.files import write_text_atomic
from mgrpo.train.run.run_dir import SAMPLES_FILE

__all__ = ["SampleRecord", "SampleRollout", "SamplesWriter", "read_samples",
           "sample_records"]

SOURCES = ("policy", "momentum")


@dataclass(frozen=True)
class SampleRollout:
    """One rollout of a logged prompt (see the module docstring)."""

    source: str
    text: str
    answer: str | None
    reward: float | None
    entropy: float
    kept: bool


@dataclass(frozen=True)
class SampleRecord:
    """One line of `samples.jsonl`: a prompt of a logged step and its rollouts in pool order."""

    step: int
    prompt: str
    label: str | None
    truth: str | None
    rollouts: list[SampleRollout]

    def to_json(self) -> str:
        data = asdict(self)
        for r in data["rollouts"]:  # JSON has no NaN
            for key in ("reward", "entropy"):
                if isinstance(r[key], float) and not math.isfinite(r[key]):
                    r[key] = None
        return json.dumps(data, ensure_ascii=False)


def sample_records(
    step: int,
    prompts: Sequence[str],
    labels: Sequence[str | None],
    truths: Sequence[str | None],
    texts: Sequence[Sequence[str]],
    answers: Sequence[Sequence[str | None]],
    entropies: Sequence[Sequence[float]],
    kept: Sequence[Sequence[bool]],
    rewards: Sequence[Sequence[float]],
    n_policy: int,
) -> list[SampleRecord]:
    """Records of one step from its per-prompt pool-ordered lists.

    Args:
        texts, answers, entropies, kept: ``(B, G)`` in pool order; the first ``n_policy`` of
            each row are the policy's rollouts, the rest the momentum model's.
        rewards: ``(B, M)``: the rewards of the first M (train) rollouts of each row.

    Raises:
        ValueError: the per-prompt lists disagree in length.
    """
    B = len(prompts)
    for name, rows in (("labels", labels), ("truths", truths), ("texts", texts),
                       ("answers", answers), ("entropies", entropies), ("kept", kept),
                       ("rewards", rewards)):
        if len(rows) != B:
            raise ValueError(f"sample_records: {name} has {len(rows)} rows, expected {B}")
    out = []
    for b in range(B):
        G = len(texts[b])
        if not (len(answers[b]) == len(entropies[b]) == len(kept[b]) == G):
            raise ValueError(f"sample_records: prompt {b}'s rollout lists differ in length")
        rollouts = [
            SampleRollout(
                source=SOURCES[g >= n_policy], text=texts[b][g], answer=answers[b][g],
                reward=float(rewards[b][g]) if g < len(rewards[b]) else None,
                entropy=float(entropies[b][g]), kept=bool(kept[b][g]),
            )
            for g in range(G)
        ]
        out.append(SampleRecord(step, prompts[b], labels[b], truths[b], rollouts))
    return out


def _step_of(line: str) -> int | None:
    try:
        step = json.loads(line)["step"]
    except (ValueError, KeyError, TypeError):
        return None  # a partial last line of a killed run
    return step if isinstance(step, int) else None


def read_samples(path: Path) -> list[dict[str, Any]]:
    """Complete lines of a samples file (partial or malformed lines skipped); [] if absent."""
    if not path.is_file():
        return []
    out = []
    for line in path.read_text(encoding="utf-8").splitlines():
        if _step_of(line) is not None:
            out.append(json.loads(line))
    return out


class SamplesWriter:
    """Appends the records of every ``every``-th step to ``run_dir/samples.jsonl`` (rank 0)."""

    def __init__(self, run_dir: Path, every: int) -> None:
        if isinstance(every, bool) or not isinstance(every, int) or every < 0:
            raise ValueError(f"trainer.log_samples_every must be an int >= 0, got {every!r}")
        self.path = Path(run_dir) / SAMPLES_FILE
        self.every = every
        self.last_step = max((r["step"] for r in read_samples(self.path)), default=0)

    def due(self, step: int) -> bool:
        """Whether step ``step`` is logged (``every`` 0 = never)."""
        return self.every > 0 and step % self.every == 0 and step > self.last_step

    def truncate_after(self, step: int) -> None:
        """Drop lines of steps > ``step`` and partial lines (a resumed run redoes them)."""
        if self.path.exists():
            keep = [line for line in self.path.read_text(encoding="utf-8").splitlines()
                    if (s := _step_of(line)) is not None and s <= step]
            write_text_atomic(self.path, "".join(x + "\n" for x in keep))
        self.last_step = min(self.last_step, step)

    def write(self, records: Sequence[SampleRecord]) -> None:
        """Append one step's records in one write; a step already in the file is skipped."""
        if not records:
            return
        step = records[0].step
        if any(r.step != step for r in records):
            raise ValueError("SamplesWriter.write takes the records of one step")
        if step <= self.last_step:
            return
        text = "".join(r.to_json() + "\n" for r in records)
        with open(self.path, "a", encoding="utf-8") as fh:
            fh.write(text)
            fh.flush()
            os.fsync(fh.fileno())
        self.last_step = step
