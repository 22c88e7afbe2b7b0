"""Rollout generation behind one interface: `hf` (reference) and `fast` (our engine).

engine = make_engine("fast", model, pad_token_id=tok.pad_token_id)
batch = engine.generate(prompt_ids, n=8, params=SamplingParams(max_new_tokens=256))
logp, ent = engine.score(prompts_per_rollout, batch.response_ids, batch.response_mask, 1.0)
logp, _ = score_responses(model, ..., with_grad=True)   # training: chunked, memory-bounded
policy, momentum = generate_groups(prompt_ids, [(e1, 8, 0), (e2, 2, 1)], params)  # rollout/groups.py
"""

from mgrpo.rollout.base import RolloutEngine
from mgrpo.rollout.batch import RolloutBatch
from mgrpo.rollout.params import SamplingParams
from mgrpo.rollout.registry import ENGINES, make_engine
from mgrpo.rollout.scoring import score_responses

__all__ = [
    "ENGINES",
    "RolloutBatch",
    "RolloutEngine",
    "SamplingParams",
    "make_engine",
    "score_responses",
]
