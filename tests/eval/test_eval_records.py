"""evaluate_records with a scripted engine: metrics by hand, maj@k clustering, sample rows."""

from __future__ import annotations

import pytest
import torch

from mgrpo.data.datasets import PromptRecord
from mgrpo.eval import evaluate_records
from mgrpo.models.tokenizer import build_char_tokenizer
from mgrpo.rollout import RolloutBatch, SamplingParams


class ScriptedEngine:
    """Returns fixed responses: `script[question]` is the list of n responses for that prompt.

    The question is recovered by decoding the prompt ids (char tokenizer round-trips), so the
    test also checks that prompts reach the engine rendered and tokenized as expected.
    """

    def __init__(self, tokenizer, script: dict[str, list[str]]) -> None:
        self.tokenizer = tokenizer
        self.script = script
        self.calls: list[tuple[int, int, int]] = []  # (num prompts, n, seed)

    def generate(self, prompt_token_ids, n, params):
        self.calls.append((len(prompt_token_ids), n, params.seed))
        texts = []
        for ids in prompt_token_ids:
            prompt = self.tokenizer.decode(ids, skip_special_tokens=True)
            question = prompt.split("\n")[0]
            assert len(self.script[question]) == n
            texts += self.script[question]
        encoded = [
            self.tokenizer(t, add_special_tokens=False)["input_ids"] + [self.tokenizer.eos_token_id]
            for t in texts
        ]
        width = max(len(e) for e in encoded)
        ids = torch.full((len(encoded), width), self.tokenizer.pad_token_id, dtype=torch.long)
        mask = torch.zeros_like(ids, dtype=torch.bool)
        for i, e in enumerate(encoded):
            ids[i, : len(e)] = torch.tensor(e)
            mask[i, : len(e)] = True
        zeros = torch.zeros(ids.shape, dtype=torch.float32)
        return RolloutBatch(
            prompt_index=torch.arange(len(prompt_token_ids)).repeat_interleave(n),
            response_ids=ids,
            response_mask=mask,
            logprobs=zeros,
            entropies=zeros,
            lengths=mask.sum(1),
            finish_reasons=["stop"] * len(encoded),
        )


@pytest.fixture(scope="module")
def tokenizer():
    return build_char_tokenizer()


@pytest.fixture(scope="module")
def checker():
    from mgrpo.answers import AnswerChecker

    with AnswerChecker(timeout_s=20.0) as c:
        yield c


PARAMS = SamplingParams(max_new_tokens=8, temperature=1.0, seed=7)


def test_math_metrics_by_hand(tokenizer, checker) -> None:
    records = [
        PromptRecord("p0", "Q0", "1/2"),
        PromptRecord("p1", "Q1", "3"),
        PromptRecord("p2", "Q2", "10"),
    ]
    script = {
        # half correct; the majority cluster (0.5 == \frac12 == 1/2) is correct
        "Q0": ["so \\boxed{\\frac{1}{2}}", "\\boxed{0.5}", "\\boxed{7}", "no answer"],
        # none correct; two unparsable
        "Q1": ["\\boxed{4}", "\\boxed{5}", "nothing", "nothing"],
        # one correct, but the wrong answer 9 wins the vote
        "Q2": ["\\boxed{9}", "\\boxed{10}", "\\boxed{9}", "\\boxed{8}"],
    }
    engine = ScriptedEngine(tokenizer, script)
    rows: list[dict] = []
    out = evaluate_records(
        engine,
        tokenizer,
        records,
        kind="math",
        samples=4,
        params=PARAMS,
        template="plain",
        checker=checker,
        batch_size=2,
        sample_rows=rows,
    )
    assert engine.calls == [(2, 4, 7), (1, 4, 8)]  # batched, prompt-major, seed advanced per batch
    assert out["n_problems"] == 3 and out["samples"] == 4
    assert out["avg@k"] == out["accuracy"] == pytest.approx(3 / 12)
    assert out["pass@1"] == pytest.approx(3 / 12)
    assert out["pass@4"] == out["pass@k"] == pytest.approx(2 / 3)
    assert out["maj@k"] == pytest.approx(1 / 3)
    assert out["time/generate"] >= 0 and out["time/total"] >= out["time/generate"]
    assert len(rows) == 12
    assert [r["problem_id"] for r in rows[:5]] == ["p0"] * 4 + ["p1"]
    assert [r["correct"] for r in rows[:4]] == [True, True, False, False]
    assert rows[0]["extracted"] == "\\frac{1}{2}" and rows[3]["extracted"] is None
    assert rows[0]["prompt"].startswith("Q0\nPlease reason step by step")
    assert rows[0]["reference"] == "1/2" and rows[0]["finish_reason"] == "stop"
    assert rows[0]["length"] == len("so \\boxed{\\frac{1}{2}}") + 1  # + EOS


def test_choice_and_gsm8k_kinds(tokenizer, checker) -> None:
    records = [
        PromptRecord("c0", "Pick", "B", meta={"choice_seed": 5, "permutation": [1, 0]}),
        PromptRecord("c1", "Pick2", "A"),
    ]
    script = {"Pick": ["\\boxed{B}", "The answer is (A)"], "Pick2": ["\\boxed{a}", "\\boxed{A}"]}
    rows: list[dict] = []
    out = evaluate_records(
        ScriptedEngine(tokenizer, script),
        tokenizer,
        records,
        kind="choice",
        samples=2,
        params=PARAMS,
        template="plain",
        checker=checker,
        sample_rows=rows,
    )
    assert out["avg@k"] == pytest.approx(3 / 4) and out["maj@k"] == pytest.approx(1.0)
    assert rows[0]["choice_seed"] == 5 and rows[0]["permutation"] == [1, 0]
    assert "letter of the correct option" in rows[0]["prompt"]
    gsm = [PromptRecord("g0", "How many", "1200")]
    out = evaluate_records(
        ScriptedEngine(tokenizer, {"How many": ["so #### 1,200", "\\boxed{1300}"]}),
        tokenizer,
        gsm,
        kind="gsm8k",
        samples=2,
        params=PARAMS,
        template="plain",
        checker=checker,
    )
    assert out["avg@k"] == pytest.approx(0.5)


def test_bad_arguments(tokenizer, checker) -> None:
    engine = ScriptedEngine(tokenizer, {})
    good = [PromptRecord("a", "Q", "1")]
    with pytest.raises(ValueError, match="kind='essay'"):
        evaluate_records(
            engine, tokenizer, good, kind="essay", samples=1, params=PARAMS, checker=checker
        )
    with pytest.raises(ValueError, match="samples must be an int >= 1"):
        evaluate_records(
            engine, tokenizer, good, kind="math", samples=0, params=PARAMS, checker=checker
        )
    with pytest.raises(ValueError, match="records is empty"):
        evaluate_records(
            engine, tokenizer, [], kind="math", samples=1, params=PARAMS, checker=checker
        )
    with pytest.raises(ValueError, match="no reference answer"):
        evaluate_records(
            engine,
            tokenizer,
            [PromptRecord("a", "Q")],
            kind="math",
            samples=1,
            params=PARAMS,
            checker=checker,
        )


def test_code_kind_grades_in_sandbox(tokenizer) -> None:
    sandbox = pytest.importorskip("mgrpo.eval.sandbox")
    if not hasattr(sandbox, "grade_mbpp_plus"):
        pytest.skip("sandbox grader not available yet")
    from mgrpo.data.benchmarks import load_benchmark

    (record,) = load_benchmark("mbpp_plus", limit=1)
    row = record.meta["row"]
    # strip(): the character tokenizer maps "\n\n" to <unk> (reported to its owner)
    good = f"```python\n{row['canonical_solution'].strip()}\n```"
    bad = "```python\ndef similar_elements(a, b):\n    return ()\n```"
    first_line = record.question.split("\n")[0]
    engine = ScriptedEngine(tokenizer, {first_line: [good, bad]})
    rows: list[dict] = []
    out = evaluate_records(
        engine,
        tokenizer,
        [record],
        kind="code",
        samples=2,
        params=PARAMS,
        template="plain",
        sample_rows=rows,
    )
    assert [r["correct"] for r in rows] == [True, False]
    assert out["avg@k"] == pytest.approx(0.5) and out["maj@k"] is None
    assert rows[0]["extracted"].strip().startswith("def similar_elements") and rows[0]["status"]


def test_long_prompts_are_left_truncated_and_counted(tokenizer, checker) -> None:
    seen: list[int] = []

    class LengthEngine(ScriptedEngine):
        def generate(self, prompt_token_ids, n, params):
            seen.extend(len(p) for p in prompt_token_ids)
            return super().generate(
                [tokenizer("Q" + "\n", add_special_tokens=False)["input_ids"]]
                * len(prompt_token_ids),
                n,
                params,
            )

    records = [PromptRecord("long", "x" * 500, "1"), PromptRecord("short", "y", "1")]
    engine = LengthEngine(tokenizer, {"Q": ["\\boxed{1}"]})
    out = evaluate_records(
        engine,
        tokenizer,
        records,
        kind="math",
        samples=1,
        params=PARAMS,
        template="plain",
        checker=checker,
        max_prompt_tokens=100,
    )
    assert out["prompts_truncated"] == 1 and seen[0] == 100 and seen[1] < 100
    assert out["avg@k"] == 1.0


class ConstantEngine(ScriptedEngine):
    """Answers every prompt with the same response."""

    def __init__(self, tokenizer, response: str) -> None:
        super().__init__(tokenizer, {})
        self.response = response

    def generate(self, prompt_token_ids, n, params):
        self.script = {}
        for ids in prompt_token_ids:
            question = self.tokenizer.decode(ids, skip_special_tokens=True).split("\n")[0]
            self.script[question] = [self.response] * n
        return super().generate(prompt_token_ids, n, params)


def test_evaluate_benchmark_reports_overhead(tokenizer, checker) -> None:
    from mgrpo.eval import evaluate_benchmark

    rows: list[dict] = []
    out = evaluate_benchmark(
        ConstantEngine(tokenizer, "\\boxed{204}"),
        tokenizer,
        "aime24",
        params=PARAMS,
        limit=3,
        checker=checker,
        batch_size=2,
        progress=False,
        sample_rows=rows,
        template="plain",
    )
    assert (
        out["benchmark"] == "aime24" and out["n_problems"] == 3 and out["samples"] == 8
    )  # paper k
    assert out["avg@k"] == pytest.approx(1 / 3) and out["maj@k"] == pytest.approx(1 / 3)
    assert out["overhead_s"] == pytest.approx(out["wall_s"] - out["time/generate"])
    assert 0 <= out["overhead_fraction"] < 1 and out["time/grade_wait"] >= 0
    assert len(rows) == 24


def test_grading_errors_propagate(tokenizer) -> None:
    class BrokenChecker:
        def equivalent_many(self, pairs):
            raise RuntimeError("checker exploded")

    records = [PromptRecord("a", "Q", "1")]
    with pytest.raises(RuntimeError, match="checker exploded"):
        evaluate_records(
            ConstantEngine(tokenizer, "\\boxed{2}"),
            tokenizer,
            records,
            kind="math",
            samples=1,
            params=PARAMS,
            template="plain",
            checker=BrokenChecker(),
        )
