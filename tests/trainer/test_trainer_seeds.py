"""The one home of seeds (mgrpo.seeds): values pinned (the decode-chunk mixer's too), and generate_groups' separate path equal to direct engine calls."""

from __future__ import annotations

import pytest
import torch

from mgrpo import seeds
from mgrpo.models.tiny import build_tiny_model
from mgrpo.models.tokenizer import build_char_tokenizer
from mgrpo.rollout import SamplingParams, make_engine
from mgrpo.rollout.groups import generate_groups, joint_decode


def test_seed_values_are_pinned():
    assert seeds.step_seed(0, 1, seeds.POLICY_STREAM) == 7_919
    assert seeds.step_seed(3, 2, seeds.MOMENTUM_STREAM, 5) == (
        3 * 1_000_003 + 2 * 7_919 + 104_729 + 5 * 15_485_863) % (2**31 - 1)
    assert (seeds.POLICY_STREAM, seeds.MOMENTUM_STREAM, seeds.VALIDATION_STREAM) == (0, 1, 99)
    assert seeds.epoch_seed(2, 3) == 20_017
    # the decode-chunk mixer's values (SplitMix64 of (seed, index); chunk 0 keeps the seed)
    assert [seeds.chunk_seed(5, i) for i in range(4)] == [
        5, 1_812_625_897_064_547_318, 2_856_144_538_478_753_286, 1_629_450_011_634_527_727]
    assert seeds.chunk_seed(123_456_789, 7) == 2_663_451_653_759_274_285


def test_generate_groups_separate_calls_and_bad_groups():
    tok = build_char_tokenizer()
    engines = [make_engine("hf", build_tiny_model(tok, seed=s, dtype=torch.float32),
                           pad_token_id=tok.pad_token_id) for s in (0, 1)]
    assert not joint_decode(engines)  # hf engines decode separately
    ids = [tok.encode("1+2="), tok.encode("3+4=")]

    def params(stream, prompt):
        return SamplingParams(max_new_tokens=4, temperature=1.0, seed=10 * stream + prompt)

    a, b = generate_groups(ids, [(engines[0], 2, 0), (engines[1], 3, 1)], params)
    assert torch.equal(a.response_ids, engines[0].generate(ids, 2, params(0, 0)).response_ids)
    assert torch.equal(b.response_ids, engines[1].generate(ids, 3, params(1, 0)).response_ids)
    per = generate_groups(ids, [(engines[0], 2, 0)], params, prompt_offset=4, per_prompt=True)[0]
    want = engines[0].generate(ids[1:], 2, params(0, 6))  # prompt 1: global index 5, seed 5 + 1
    width = want.response_ids.shape[1]
    assert torch.equal(per.response_ids[2:, :width], want.response_ids)
    with pytest.raises(ValueError, match="groups"):
        generate_groups(ids, [], params)
    with pytest.raises(ValueError, match=r"groups\[0\] asks for n = 0"):
        generate_groups(ids, [(engines[0], 0, 0)], params)
