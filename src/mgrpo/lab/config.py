"""Configuration of the lab world: model shape, tokenizer alphabet, the easy SFT mixture,
the hard RL task, SFT schedule and the post-build measurement, with a stable hash.

The hash keys the on-disk cache (`~/.cache/mgrpo/lab/<hash>/`): any change to any field
(or to `LAB_FORMAT_VERSION`, bumped whenever the build procedure changes what it
produces) gives a new cache entry.

Task split. Every RL-task problem (train or val) is held out of the SFT data: a problem
belongs to the RL pool iff it lies in the task distribution and its question's stable
bucket (`question_bucket`, sha256-based, 0..99) is below `RL_POOL_BUCKETS`; val takes
buckets [0, VAL_BUCKETS), train the rest of the pool. SFT never draws a question of the
pool, so RL prompts are never memorised answers.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from dataclasses import dataclass, field

from mgrpo.checks import check_int, invalid
from mgrpo.data.arithmetic import VALID_OPS, parse_expression

LAB_MODEL_NAME = "lab"  # the embedded model name the model loader resolves to build_lab_model()
LAB_FORMAT_VERSION = 1  # bump when the build procedure changes its output for the same config
# Prompt template (use with mgrpo.data.templates.render_prompt(template=LAB_TEMPLATE)); no BOS.
LAB_TEMPLATE = "Q:{question}=?\nA:"
# every character the template, questions and worked solutions use (char tokenizer)
LAB_ALPHABET = "0123456789+-*=?:,.\\{}boxedQA\n"
NUM_BUCKETS = 100
RL_POOL_BUCKETS = 50  # buckets [0, 50) of task-distribution questions are held out of SFT
VAL_BUCKETS = 10  # of those, [0, 10) are the val split, [10, 50) the train split
SPLITS = ("train", "val")


def question_bucket(question: str) -> int:
    """Stable bucket 0..NUM_BUCKETS-1 of a question (sha256 of its text; not Python's hash)."""
    return int(hashlib.sha256(question.encode()).hexdigest()[:8], 16) % NUM_BUCKETS


@dataclass(frozen=True)
class TaskSpec:
    """One arithmetic distribution (see `mgrpo.data.arithmetic.make_problems`)."""

    min_operands: int
    max_operands: int
    max_value: int
    ops: str = "+-"
    min_value: int = 0

    def __post_init__(self) -> None:
        check_int(self.min_operands, "TaskSpec.min_operands", low=1)
        check_int(self.max_operands, "TaskSpec.max_operands", low=self.min_operands,
                  rule=">= min_operands")
        if not (isinstance(self.min_value, int) and 0 <= self.min_value <= self.max_value):
            raise ValueError(
                f"TaskSpec needs 0 <= min_value <= max_value, got {self.min_value!r}, {self.max_value!r}"
            )
        if not self.ops or any(op not in VALID_OPS for op in self.ops):
            raise invalid("TaskSpec.ops", f"characters of {VALID_OPS!r}", self.ops)

    def contains(self, question: str) -> bool:
        """True if `question` could have been drawn from this distribution."""
        operands, operators = parse_expression(question)
        return (
            self.min_operands <= len(operands) <= self.max_operands
            and all(self.min_value <= v <= self.max_value for v in operands)
            and all(op in self.ops for op in operators)
        )

    def kwargs(self) -> dict:
        """Keyword arguments for `make_problems`."""
        return dict(min_operands=self.min_operands, max_operands=self.max_operands,
                    max_value=self.max_value, ops=self.ops, min_value=self.min_value)

    def describe(self) -> str:
        n = (f"{self.min_operands}" if self.min_operands == self.max_operands
             else f"{self.min_operands}-{self.max_operands}")
        return f"{n} operands in {self.min_value}..{self.max_value}, ops {self.ops!r}"


# The easy SFT mixture and the hard RL task of the default lab world: SFT mostly (75%) on 2-3
# single-digit operands plus a 25% slice of 4-operand problems (never an RL-pool question); the
# RL task is held-out 4-operand problems. The slice is what makes the world useful for
# label-free RL: the SFT model is right on the task only part of the time and its majority
# vote more often, a gap the vote can amplify; with no 4-operand SFT data (pure
# extrapolation) a model this small is mostly wrong, systematically, and its vote is no better
# than one sample. The task accuracy depends steeply on the share and the SFT steps: after
# changing either, measure the world again (`mgrpo lab info` / `mgrpo lab measure`; the
# measured worlds: docs/lab-study.md).
DEFAULT_SFT_MIX: tuple[tuple[float, TaskSpec], ...] = (
    (0.75, TaskSpec(min_operands=2, max_operands=3, max_value=9)),
    (0.25, TaskSpec(min_operands=4, max_operands=4, max_value=9)),
)
DEFAULT_TASK = TaskSpec(min_operands=4, max_operands=4, max_value=9)


@dataclass(frozen=True)
class LabConfig:
    """Everything that determines the lab model bit for bit (on a given torch build).

    Model: a Llama of `hidden_size` x `num_layers` (~0.6 M parameters by default) over a
    character tokenizer of `alphabet`. SFT: `sft_steps` AdamW steps of `batch_size`
    fresh problems drawn from `sft_mix` (weights sum to 1), loss on response tokens +
    EOS only, lr linear warm-up over `warmup_fraction` then cosine to 0, grad clip
    `grad_clip`. Measurement: `measure_problems` val problems of `task`, `measure_samples`
    samples each at `measure_temperature`, reported as mean sample accuracy and maj@G.

    Answer noise: each SFT example's worked solution carries, with probability
    `answer_noise`, one arithmetic slip (`mgrpo.lab.noise.slipped_solution`: one step's result
    off by 1..`noise_max`, the later steps and the boxed answer computed from the wrong
    value), so the model learns errors that are random per sample rather than fixed per
    problem. Fields in `HASH_OPTIONAL` enter `to_dict` (and the hash) only when they differ
    from their defaults, so adding such a field keeps every existing world's hash.
    """

    hidden_size: int = 128
    num_layers: int = 4
    num_heads: int = 4
    num_kv_heads: int = 2
    intermediate_size: int = 256
    max_position_embeddings: int = 128
    alphabet: str = LAB_ALPHABET
    template: str = LAB_TEMPLATE
    sft_mix: tuple[tuple[float, TaskSpec], ...] = DEFAULT_SFT_MIX
    task: TaskSpec = DEFAULT_TASK
    sft_steps: int = 300
    batch_size: int = 64
    lr: float = 3e-3
    warmup_fraction: float = 0.1
    weight_decay: float = 0.0
    betas: tuple[float, float] = (0.9, 0.95)
    grad_clip: float = 1.0
    seed: int = 0
    measure_problems: int = 128
    measure_samples: int = 8
    measure_temperature: float = 1.0
    max_new_tokens: int = 64
    extra: tuple[tuple[str, str], ...] = field(default=())  # free-form tags that enter the hash
    answer_noise: float = 0.0
    noise_max: int = 2

    def __post_init__(self) -> None:
        for name in ("hidden_size", "num_layers", "num_heads", "num_kv_heads", "intermediate_size",
                     "max_position_embeddings", "sft_steps", "batch_size", "max_new_tokens",
                     "measure_samples"):
            check_int(getattr(self, name), f"LabConfig.{name}", low=1, rule="a positive int")
        check_int(self.measure_problems, "LabConfig.measure_problems", low=0)
        if "{question}" not in self.template:
            raise ValueError(f"LabConfig.template must contain '{{question}}', got {self.template!r}")
        missing = sorted(set(self.template.replace("{question}", "")) - set(self.alphabet))
        if missing:
            raise ValueError(f"LabConfig.alphabet lacks template characters {missing}")
        if not self.sft_mix:
            raise ValueError("LabConfig.sft_mix must name at least one (weight, TaskSpec)")
        for weight, spec in self.sft_mix:
            if not (isinstance(spec, TaskSpec) and weight > 0):
                raise ValueError(f"LabConfig.sft_mix entries must be (weight > 0, TaskSpec), "
                                 f"got ({weight!r}, {spec!r})")
        if abs(sum(w for w, _ in self.sft_mix) - 1.0) > 1e-6:
            raise ValueError(f"LabConfig.sft_mix weights must sum to 1, got "
                             f"{[w for w, _ in self.sft_mix]}")
        if not isinstance(self.task, TaskSpec):
            raise invalid("LabConfig.task", "a TaskSpec", self.task)
        if not (self.lr > 0 and 0 <= self.warmup_fraction < 1 and self.grad_clip > 0):
            raise ValueError(
                f"LabConfig needs lr > 0, 0 <= warmup_fraction < 1, grad_clip > 0; got lr={self.lr}, "
                f"warmup_fraction={self.warmup_fraction}, grad_clip={self.grad_clip}"
            )
        if not self.measure_temperature > 0:
            raise invalid("LabConfig.measure_temperature", "> 0", self.measure_temperature)
        if not (isinstance(self.answer_noise, (int, float)) and 0.0 <= self.answer_noise < 1.0):
            raise invalid("LabConfig.answer_noise", "a probability in [0, 1)", self.answer_noise)
        check_int(self.noise_max, "LabConfig.noise_max", low=1, rule="a positive int")

    def to_dict(self) -> dict:
        """Plain JSON-able dict (nested TaskSpecs become dicts, tuples lists); the fields of
        `HASH_OPTIONAL` are left out while they hold their default values."""
        data = json.loads(json.dumps(dataclasses.asdict(self)))
        for name, default in HASH_OPTIONAL.items():
            if data[name] == default:
                del data[name]
        return data

    def config_hash(self) -> str:
        """16 hex chars of sha256 over the canonical JSON of the config + LAB_FORMAT_VERSION."""
        payload = json.dumps({"format": LAB_FORMAT_VERSION, "config": self.to_dict()},
                             sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(payload.encode()).hexdigest()[:16]

    def replace(self, **changes) -> LabConfig:
        return dataclasses.replace(self, **changes)


# fields added after the first worlds were cached: in the hash only when not at these defaults
HASH_OPTIONAL: dict[str, object] = {"answer_noise": 0.0, "noise_max": 2}

DEFAULT_LAB_CONFIG = LabConfig()
# `mgrpo lab build --quick` and the test suite: a tiny model and a few SFT steps (seconds);
# it learns nothing useful, it only exercises build, cache and measurement end to end.
QUICK_LAB_CONFIG = LabConfig(
    hidden_size=32, num_layers=1, num_heads=2, num_kv_heads=1, intermediate_size=64,
    max_position_embeddings=96, sft_steps=4, batch_size=8, measure_problems=4, measure_samples=2,
    max_new_tokens=12,
)
