"""The training step votes and rewards with the same equivalence as evaluation
(`Equivalence.for_kind`): with `data.answer_kind: choice` option letters never reach the checker."""

from __future__ import annotations

from conftest import ScriptedEngine
from mgrpo.config import config_from_dict, load_recipe
from mgrpo.train.run.trainer import build_run
from mgrpo.train.step import StepBatch, train_step


class NoLettersChecker:
    """A checker that fails the test if the step hands it anything (letters are not math)."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, str]] = []

    def equivalent(self, a: str, b: str) -> bool:
        self.calls.append((a, b))
        return False

    def equivalent_many(self, pairs):
        self.calls.extend(pairs)
        return [False] * len(pairs)


def test_choice_letters_never_reach_the_checker(tmp_path):
    data = load_recipe("tiny")
    data["data"]["answer_kind"] = "choice"
    data["algorithm"]["iqr_k"] = None
    data["trainer"]["progress"] = False
    data["trainer"]["prompts_per_step"] = 1
    data["validation"] = {"data": None}
    cfg = config_from_dict(data)
    run = build_run(cfg, tmp_path / "run")
    M, N = run.spec.policy_rollouts, run.spec.momentum_rollouts
    policy = ["The answer is \\boxed{B}"] * (M // 2) + ["\\boxed{a}"] * (M - M // 2)
    run.models.policy_engine = ScriptedEngine(run.models.tokenizer, [policy], [[1.0] * M])
    run.models.momentum_engine = ScriptedEngine(
        run.models.tokenizer, [["\\boxed{A}"] * N], [[1.0] * N])
    checker = NoLettersChecker()
    run.models.checker = checker
    records, ids = run.train_set.batch(1, 1)
    metrics = train_step(run.models, StepBatch(ids, ["A"]), cfg, run.spec, 1)
    assert checker.calls == []
    # "a" and "A" are the same option: label A, and the lower-case rollouts earn the reward
    assert metrics["reward/mean"] == (M - M // 2) / M
    assert metrics["label/accuracy"] == 1.0
