"""The label-free presets of 2025-26 and the spurious-reward controls inside the real step,
each against its formula on scripted rollouts (`ScriptedEngine`: the test chooses the texts,
hence the answers, and the token entropies)."""

from __future__ import annotations

import pytest
import torch

from conftest import ScriptedEngine
from mgrpo.config import ConfigError, config_from_dict, load_recipe
from mgrpo.core.consensus import scrl_labels, scrl_rewards
from mgrpo.core.novelty import novelty_rewards
from mgrpo.data.arithmetic import rewrite_expression
from mgrpo.rollout.scoring import build_scoring_inputs, mean_hidden_states
from mgrpo.train.run.trainer import build_run
from mgrpo.train.step import StepBatch, train_step

SEVEN, FIVE, THREE = "\\boxed{7}", "\\boxed{5}", "\\boxed{3}"


def _cfg(data=None, **algorithm):
    raw = load_recipe("tiny")
    raw["algorithm"] = {"rollouts": 8, **algorithm}
    raw["data"].update(data or {})
    raw["trainer"].update({"progress": False, "prompts_per_step": 1})
    raw["validation"] = {"data": None}
    return config_from_dict(raw)


class _PerCall(ScriptedEngine):
    """A scripted engine whose k-th call answers with the k-th script (co-rewarding-i calls
    the policy engine twice a step: the questions, then their twins)."""

    def __init__(self, tokenizer, scripts):
        super().__init__(tokenizer, None, None)
        self.scripts, self.prompts = list(scripts), []

    def generate(self, prompt_ids, n, params):
        self.texts, self.entropies = self.scripts.pop(0)
        self.prompts.append([list(p) for p in prompt_ids])
        return super().generate(prompt_ids, n, params)


def _step(tmp_path, texts, ents, answer="5", data=None, **algorithm):
    """One real step on scripted policy rollouts; (run, metrics, samples, advantages)."""
    cfg = _cfg(data, **algorithm)
    run = build_run(cfg, tmp_path / "run")
    records, ids = run.train_set.batch(1, 1)
    scripts = texts if isinstance(texts[0], tuple) else [([texts], [ents])]
    run.models.policy_engine = _PerCall(run.models.tokenizer, scripts)
    seen = {}
    import mgrpo.train.step_updates as updates

    real = updates.policy_loss

    def spying(logp, logp_old, logp_ref, advantages, mask, **kw):
        seen.setdefault("advantages", []).append(advantages.detach().clone())
        seen["kw"] = kw
        return real(logp, logp_old, logp_ref, advantages, mask, **kw)

    updates.policy_loss = spying
    samples = []
    twins = run.train_set.twin_batch(1, 1) if run.spec.paraphrases else None
    try:
        batch = StepBatch(ids, [answer], prompt_offset=0, global_prompts=1, twin_ids=twins)
        metrics = train_step(run.models, batch, cfg, run.spec, 1, samples=samples)  # as trainer
    finally:
        updates.policy_loss = real
    return run, metrics, samples, seen


def _rewards(samples, b=0):
    return [r.reward for r in samples[b].rollouts]


# ------------------------------------------------------------------------------ evol-rl

def test_evol_rl_policy_embedding_ties_identical_rollouts(tmp_path):
    texts = [SEVEN] * 5 + [FIVE] * 2 + ["no answer"]
    run, m, samples, seen = _step(tmp_path, texts, [1.0] * 8, preset="evol-rl")
    # identical texts -> identical hidden states -> one novelty per class: the middle of each
    # range; the unparsable rollout -1 (EVOL-RL's public code)
    assert _rewards(samples) == pytest.approx([0.75] * 5 + [-0.75] * 2 + [-1.0])
    assert samples[0].label == "7"
    assert seen["kw"]["entropy_coef"] == 0.003 and seen["kw"]["clip_high"] == 0.28  # presets
    assert run.spec.votes and run.spec.vote_only_rollouts == 0


EMBED = '''
import torch

def by_length(texts):
    return torch.tensor([[float(len(t)), 1.0 + (len(t) % 3), 2.0] for t in texts])
'''


def test_evol_rl_user_embedding_and_vote_only_rollouts(tmp_path, monkeypatch):
    (tmp_path / "emb.py").write_text(EMBED)
    monkeypatch.chdir(tmp_path)
    texts = [SEVEN, "\\boxed{ 7}", "\\boxed{7} ok", "\\boxed{7}!!", FIVE, "\\boxed{5}.", THREE,
             "none", SEVEN, FIVE, THREE, "\\boxed{3} x"]  # 8 train + 4 vote-only
    run, _, samples, _ = _step(tmp_path, texts, [1.0] * 12, preset="evol-rl", rollouts=8,
                               evol_vote_rollouts=12, evol_embedding="emb.py:by_length")
    assert run.spec.vote_only_rollouts == 4
    answers = [r.answer for r in samples[0].rollouts]
    label = samples[0].label
    matches = [None if a is None else a == label for a in answers]
    emb = torch.tensor([[float(len(t)), 1.0 + (len(t) % 3), 2.0] for t in texts])
    want = novelty_rewards(emb, matches)
    # all 12 policy rollouts are scored; the samples log shows the first 8 with rewards
    assert [r.reward for r in samples[0].rollouts[:8]] == pytest.approx(want[:8])


def test_mean_hidden_states_is_the_masked_mean_of_each_rows_own_forward(tmp_path):
    run = build_run(_cfg(), tmp_path / "run")
    model = run.models.policy.eval()
    prompts = [[5, 6, 7], [8, 9], [5, 6, 7]]
    responses = torch.tensor([[11, 12, 13], [14, 15, 0], [0, 0, 0]])
    mask = torch.tensor([[1, 1, 1], [1, 1, 0], [0, 0, 0]], dtype=torch.bool)
    got = mean_hidden_states(model, prompts, responses, mask)
    for r in range(2):
        n = int(mask[r].sum())
        ids = torch.tensor([prompts[r] + responses[r, :n].tolist()])
        with torch.no_grad():
            h = model.base_model(input_ids=ids).last_hidden_state[0]
        torch.testing.assert_close(got[r], h[len(prompts[r]):].mean(0), rtol=1e-5, atol=1e-5)
    assert got[2].abs().sum() == 0  # no response token -> 0
    assert build_scoring_inputs  # the layout it shares with self_certainty


# --------------------------------------------------------------------------------- scrl

def test_scrl_in_the_step(tmp_path):
    texts = [SEVEN] * 5 + [FIVE, THREE, "none"]
    ents = [1.0] * 5 + [0.5, 3.0, 1.0]  # the lone 3 is rare and uncertain, the lone 5 calm
    _, m, samples, _ = _step(tmp_path, texts, ents, preset="scrl")
    assert _rewards(samples) == [1.0] * 5 + [0.0, -1.0, -1.0]
    labels = scrl_labels([r.answer for r in samples[0].rollouts], ents, str.__eq__,
                         tau_pos=0.5, tau_marg=0.15, tau_low=0.15)
    _, _, cont, _ = _step(tmp_path / "c", texts, ents, preset="scrl", scrl_mode="continuous")
    assert _rewards(cont) == pytest.approx(
        scrl_rewards(labels, 8, mode="continuous", lam=0.1, tau_low=0.15), rel=1e-5)
    assert "label/accuracy" not in m  # scrl reads the clusters, not a vote


# ----------------------------------------------------------------------------- restrain

def test_restrain_weights_and_scales_a_consistent_prompt(tmp_path):
    texts = [SEVEN] * 5 + [FIVE] * 3
    _, _, samples, seen = _step(tmp_path, texts, [1.0] * 8, preset="restrain")
    w7, w5 = 0.625 ** 2, 0.375 ** 2
    want = [w7 / (w7 + w5)] * 5 + [w5 / (w7 + w5)] * 3
    assert _rewards(samples) == pytest.approx(want, rel=1e-6)
    r = torch.tensor(want)
    grpo = (r - r.mean()) / (r.std() + 1e-6)
    torch.testing.assert_close(seen["advantages"][0], 0.625 * grpo, rtol=1e-5, atol=1e-6)


def test_restrain_penalises_a_prompt_without_consistency(tmp_path):
    texts = [f"\\boxed{{{d}}}" for d in range(8)]  # eight different answers: kappa = 1/8
    _, _, _, seen = _step(tmp_path, texts, [1.0] * 8, preset="restrain",
                          restrain_min_consistency=0.3, restrain_penalty=0.25)
    torch.testing.assert_close(seen["advantages"][0], torch.full((8,), -0.25))


# ------------------------------------------------------------------------ co-rewarding-i

def test_co_rewarding_i_rewards_each_copy_with_the_other_copys_vote(tmp_path):
    question = [SEVEN] * 6 + [FIVE] * 2  # the question's own vote: 7
    twin = [FIVE] * 5 + [SEVEN] * 3  # its twin's vote: 5
    run, m, samples, seen = _step(
        tmp_path, [([question], [[1.0] * 8]), ([twin], [[1.0] * 8])], None,
        preset="co-rewarding-i")
    assert run.spec.paraphrases
    assert len(samples) == 2  # the question, then its twin: 2B prompts
    assert [s.label for s in samples] == ["7", "5"]
    assert _rewards(samples, 0) == [0.0] * 6 + [1.0] * 2  # against the twin's 5
    assert _rewards(samples, 1) == [0.0] * 5 + [1.0] * 3  # against the question's 7
    engine = run.models.policy_engine
    question_text = run.train_set.batch(1, 1)[0][0].question
    rendered = run.models.tokenizer.decode(engine.prompts[1][0])
    assert rewrite_expression(question_text) in rendered  # the twin is the rewritten question
    assert sum(a.shape[0] for a in seen["advantages"]) == 16  # both copies train


def test_co_rewarding_i_refuses_data_without_twins(tmp_path):
    data = tmp_path / "q.jsonl"
    data.write_text('{"question": "1+1", "answer": "2"}\n')
    with pytest.raises(ConfigError, match="data.paraphrase_field: preset co-rewarding-i"):
        build_run(_cfg({"train": str(data)}, preset="co-rewarding-i"), tmp_path / "run")
    data.write_text('{"question": "1+1", "twin": "one plus one", "answer": "2"}\n')
    run = build_run(_cfg({"train": str(data), "paraphrase_field": "twin"},
                         preset="co-rewarding-i"), tmp_path / "run2")
    assert run.models.tokenizer.decode(run.train_set.twin_ids[0]).endswith("one plus one")


# ------------------------------------------------------------------------------ controls

def test_format_rewards_a_parsable_box_only(tmp_path):
    texts = [SEVEN, "7", "\\boxed{}", "\\boxed{ }", "\\boxed{x+1}", "\\boxed{3", FIVE, "."]
    _, _, samples, _ = _step(tmp_path, texts, [1.0] * 8, preset="format")
    assert _rewards(samples) == [1.0, 0.0, 0.0, 0.0, 1.0, 0.0, 1.0, 0.0]


def test_incorrect_label_rewards_the_fixed_wrong_answer(tmp_path):
    texts = ["\\boxed{6}"] * 3 + [FIVE] * 5  # truth 5 -> the wrong answer 6
    _, m, samples, _ = _step(tmp_path, texts, [1.0] * 8, answer="5", preset="incorrect-label")
    assert _rewards(samples) == [1.0] * 3 + [0.0] * 5
    assert m["policy/accuracy"] == pytest.approx(5 / 8)  # the truth is still only measured


def test_twin_seeds_do_not_depend_on_the_number_of_ranks():
    # one process: questions 0..3, twins 4..7; rank 1 of 2 holds questions 2, 3 and their twins
    whole = StepBatch([[1]] * 4, ["1"] * 4, 0, 4, twin_ids=[[2]] * 4).with_twins()
    half = StepBatch([[1]] * 2, ["1"] * 2, 2, 4, twin_ids=[[2]] * 2).with_twins()
    assert whole.global_prompts == half.global_prompts == 8  # the step's 2 x 4 prompts
    assert [whole.global_index(b) for b in range(8)] == list(range(8))
    assert [half.global_index(b) for b in range(4)] == [2, 3, 6, 7]
    alone = StepBatch([[1]] * 2, ["1"] * 2, twin_ids=[[2]] * 2).with_twins()  # no global size
    assert [alone.global_index(b) for b in range(4)] == [0, 1, 2, 3]
    assert half.prompt_ids == [[1], [1], [2], [2]] and half.answers == ["1"] * 4
    plain = StepBatch([[1]] * 2, ["1"] * 2, 2, 4)
    assert [plain.global_index(b) for b in range(2)] == [2, 3]  # as before: offset + b
    with pytest.raises(ValueError, match="twin_ids"):
        plain.with_twins()


def test_co_rewarding_i_without_twins_is_a_config_error_through_the_cli(tmp_path):
    import os
    import subprocess
    import sys

    data = tmp_path / "q.jsonl"
    data.write_text('{"question": "1+1", "answer": "2"}\n')
    done = subprocess.run(
        [sys.executable, "-m", "mgrpo", "train", "tiny", "algorithm.preset=co-rewarding-i",
         f"data.train={data}", "-o", str(tmp_path / "run")],
        capture_output=True, text=True, timeout=300,
        env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert done.returncode == 2 and "Traceback" not in done.stderr
    assert "config error: data.paraphrase_field: preset co-rewarding-i" in done.stderr
    assert not (tmp_path / "run").exists()
