"""EVOL-RL: the majority vote selects, novelty varies -- the vote reward rescaled by how far a
rollout's embedding is from the others of its prompt.

Per prompt, over its M + V policy rollouts (V vote-only ones, `evol_vote_rollouts`):

    label = maj(a_1 .. a_{M+V})                          (the vote, core/voting.py)
    class(i) = match (a_i ≡ label) | other | invalid (no parsable answer)
    r_i   = novelty-rescaled reward (core/novelty.py): match -> [0.5, 1], other -> [-1, -0.5],
            invalid -> -1; within a class the more novel rollout (lower mean similarity to
            its class, lower max similarity to any rollout) gets the higher reward

over embeddings e_i of the rollouts: by default the policy's own final hidden state averaged
over the response tokens (`rollout.scoring.mean_hidden_states`, one extra no-grad trunk pass
per step, no LM head), or a user function `algorithm.evol_embedding: file.py:fn` /
`module:fn` called once per step with the (B (M + V),) decoded response texts, returning an
(R, D) array (a real embedding model). The preset turns on the entropy bonus (`entropy_coef`
0.003) and clip-higher (`clip_high` 0.28), as the authors' README run does.

Paper: Zhou et al. 2025, arXiv 2509.15194. Public code: YujunZhou/EVOL-RL
(`verl/verl/workers/reward_manager/semantic_novelty.py`; run: `examples/labelfree/evol_rl.sh
--ent 0.003 --clip-high`).

Departures: (1) the embedding: the public code embeds the text after `</think>` with
Qwen3-Embedding-4B on a separate vLLM server, which cannot be downloaded here; the default is
the policy's own mean last hidden state of the whole response, conditioned on the prompt (a
user function restores an external model). (2) Validity: "invalid" is the run's answer
extractor finding no answer (`data.answer_kind`), where the public code asks for a
`\\boxed{...}` holding a digit. (3) Rollouts: the authors vote and score novelty over 64 and
train on 32; here over G (V = 0) unless `evol_vote_rollouts` is set (2 G reproduces theirs).
(4) KL and learning rate stay the recipe's (their script: low_var_kl 0.001, lr 5e-7).
Answers are grouped by the run's equivalence (the voting walk), as in every vote here.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal

from mgrpo.fields import ConfigError, check, doc
from mgrpo.methods.base import (
    AlgorithmConfig,
    AlgorithmSpec,
    bind,
    preset,
    preset_default,
    preset_field,
    reward,
)
from mgrpo.user_functions import is_user_spec, load_user_function

if TYPE_CHECKING:  # typing only: the reward's tensors
    from torch import Tensor

    from mgrpo.methods.inputs import RewardInputs

__all__ = ["POLICY_EMBEDDING", "EvolRlConfig", "evol_novelty_reward", "evol_rl"]

#: `algorithm.evol_embedding` for the policy's own mean last hidden state
POLICY_EMBEDDING = "policy"


@reward("evol_novelty", votes=True)
def evol_novelty_reward(x: RewardInputs, *, embed: Callable[[list[str]], object] | None = None,
                        embed_name: str = POLICY_EMBEDDING) -> Tensor:
    """EVOL-RL's reward of each train rollout (module docstring); (B, M) on D. `embed`: a
    user embedding function (None: the policy's mean last hidden state)."""
    # lazy, start-up: method modules load without torch (a config error imports none)
    import torch

    from mgrpo.core.novelty import novelty_rewards

    B, M = x.shape
    pool = x.pool
    n = pool.policy_entropy.shape[1]  # M + V policy rollouts per prompt
    embeddings = _embeddings(x, embed, embed_name).view(B, n, -1)  # (B, M + V, D)
    rows = []
    for b, (answers, label) in enumerate(zip(pool.answers, x.labels)):
        matches = [None if a is None else (label is not None and bool(x.equivalent(a, label)))
                   for a in answers[:n]]
        rows.append(novelty_rewards(embeddings[b], matches)[:M])
    return torch.tensor(rows, dtype=torch.float32, device=x.device)  # (B, M)


def _embeddings(x: RewardInputs, embed: Callable[[list[str]], object] | None,
                embed_name: str) -> Tensor:
    """(B (M + V), D) embeddings of the policy rollouts, prompt-major."""
    # lazy, start-up: method modules load without torch (a config error imports none)
    import torch

    from mgrpo.user_functions import UserFunctionError, call_user_function

    policy = x.pool.policy
    if embed is None:
        # lazy, start-up: the scoring module imports transformers' helpers
        from mgrpo.rollout.scoring import mean_hidden_states

        prompts = [x.prompt_ids[i] for i in policy.prompt_index.tolist()]
        return mean_hidden_states(x.sampler, prompts, policy.response_ids, policy.response_mask)
    n = x.pool.policy_entropy.shape[1]
    texts = [t for row in x.pool.texts for t in row[:n]]
    where = f"embedding function {embed_name} at step {x.step}"
    value = call_user_function(embed, f"embedding function {embed_name} raised at step {x.step}",
                               texts)
    try:
        out = torch.as_tensor(value, dtype=torch.float32)
    except (TypeError, ValueError, RuntimeError) as exc:
        raise UserFunctionError(f"{where} returned {type(value).__name__}, not an (R, D) array "
                                f"of numbers: {exc}") from None
    if out.dim() != 2 or out.shape[0] != len(texts) or out.shape[1] < 1:
        raise UserFunctionError(f"{where} returned shape {tuple(out.shape)}, expected (R, D) "
                                f"with R = {len(texts)} texts and D >= 1")
    if not bool(torch.isfinite(out).all()):
        raise UserFunctionError(f"{where} returned NaN/inf, expected finite numbers, (R, D) "
                                f"with R = {len(texts)}")
    return out


@dataclass(frozen=True)
class EvolRlConfig(AlgorithmConfig):
    """`algorithm.*` of preset evol-rl."""

    preset: Literal["evol-rl"] = preset_field("evol-rl")
    evol_vote_rollouts: int | None = doc(
        None, "policy samples per prompt that vote and are scored for novelty, >= G; the "
        "first G train (null = G; EVOL-RL's script: 64 vote, 32 train)")
    evol_embedding: str = doc(
        POLICY_EMBEDDING, "the rollout embedding of the novelty: 'policy' (the policy's own "
        "final hidden state averaged over the response tokens) or a user function "
        "'path/to/file.py:function' / 'package.module:function' taking the list of response "
        "texts and returning an (R, D) array (EVOL-RL: Qwen3-Embedding-4B)")
    entropy_coef: float = preset_default("entropy_coef", 0.003,
                                         "EVOL-RL's README run: --ent 0.003")
    clip_high: float | None = preset_default("clip_high", 0.28,
                                             "EVOL-RL's README run: --clip-high, 0.28")

    def __post_init__(self) -> None:
        super().__post_init__()
        check(self.evol_vote_rollouts is None or self.evol_vote_rollouts >= self.rollouts,
              "algorithm.evol_vote_rollouts", f"must be >= algorithm.rollouts = {self.rollouts}")
        check(self.evol_embedding == POLICY_EMBEDDING or is_user_spec(self.evol_embedding),
              "algorithm.evol_embedding", f"expected 'policy' or 'file.py:function' / "
              f"'package.module:function', got {self.evol_embedding!r}")


@preset("evol-rl", EvolRlConfig)
def evol_rl(cfg: EvolRlConfig) -> AlgorithmSpec:
    """G policy rollouts train, they and V vote-only ones vote; the novelty-rescaled reward.
    A user embedding function is loaded here (ConfigError naming the key if it cannot be)."""
    voters = cfg.evol_vote_rollouts if cfg.evol_vote_rollouts is not None else cfg.rollouts
    embed = None
    if cfg.evol_embedding != POLICY_EMBEDDING:
        try:
            embed = load_user_function(cfg.evol_embedding, "embedding")
        except ValueError as exc:
            raise ConfigError(f"algorithm.evol_embedding: {exc}") from None
    return cfg.spec(rewards=(bind("evol_novelty", embed=embed, embed_name=cfg.evol_embedding),),
                    vote_only_rollouts=voters - cfg.rollouts)
