"""Every seed a run derives, and its named streams, in one place (imports nothing heavy).

A run has one user seed `cfg.seed`. Sampling seeds are pure functions of it, never of a
global RNG state, so a resumed or re-sharded run draws the same samples:

    step_seed(seed, step, stream[, prompt])   the rollouts of one step, stream and prompt
    resample_stream(stream, attempt)          a stream's groups generated again by dynamic
                                              sampling (`train/step_resample.py`)
    chunk_seed(seed, c)                       prompt chunk c of a decode call split by the
                                              KV budget (chunk 0 keeps the call's own seed)
    request_seed(seed, i)                     request i of a vLLM call (one request per rollout:
                                              prompt b's sample j is i = b n + j)
    epoch_seed(seed, e)                       the order of the training prompts in epoch e
    seed + VAL_SEED_OFFSET                    drawing a validation set (seed + 1)
    seed + SYNTHETIC_VAL_SEED_OFFSET          the held-out synthetic arithmetic problems

Streams keep the draws of different consumers apart within one step: the policy's rollouts,
the momentum model's rollouts, the rephrased twins' rollouts (co-rewarding-i), the random
tie rule of the vote, the random reward, and periodic validation.
"""

from __future__ import annotations

__all__ = [
    "MOMENTUM_STREAM",
    "PARAPHRASE_STREAM",
    "POLICY_STREAM",
    "RANDOM_REWARD_STREAM",
    "SYNTHETIC_VAL_SEED_OFFSET",
    "VALIDATION_STREAM",
    "VAL_SEED_OFFSET",
    "VOTE_TIE_STREAM",
    "chunk_seed",
    "epoch_seed",
    "request_seed",
    "resample_stream",
    "step_seed",
]

POLICY_STREAM = 0  # the policy's M (+ V vote-only) rollouts of a training step
MOMENTUM_STREAM = 1  # the momentum model's N rollouts of a training step
VOTE_TIE_STREAM = 2  # `algorithm.vote_ties: random`, one seed per global prompt
RANDOM_REWARD_STREAM = 3  # preset random's Bernoulli rewards, one seed per global prompt
PARAPHRASE_STREAM = 5  # co-rewarding-i: the policy's rollouts of the rephrased twins
VALIDATION_STREAM = 99  # periodic validation, distinct from the training streams
RESAMPLE_STREAM_STRIDE = 1_000  # attempt a of dynamic sampling: stream + a * stride

VAL_SEED_OFFSET = 1  # validation sets are drawn with seed + 1
SYNTHETIC_VAL_SEED_OFFSET = 7_919  # held-out synthetic problems: seed + 7919
_PRIME_EPOCH = 10_007

_PRIME_SEED, _PRIME_STEP, _PRIME_STREAM, _PRIME_PROMPT = 1_000_003, 7_919, 104_729, 15_485_863
_MODULUS = 2**31 - 1
_MIX = 0x9E3779B97F4A7C15  # golden-ratio constant of SplitMix64
_MIX2, _MIX3 = 0xBF58476D1CE4E5B9, 0x94D049BB133111EB
_MASK64 = (1 << 64) - 1


def step_seed(seed: int, step: int, stream: int, prompt: int = 0) -> int:
    """Sampling seed of (seed, step, stream[, global prompt index]) in [0, 2^31 - 1):
    `(seed p1 + step p2 + stream p3 + prompt p4) mod (2^31 - 1)` with four primes. `prompt`
    0 is the seed of a whole step's batched call; a per-prompt call uses prompt index + 1."""
    return (seed * _PRIME_SEED + step * _PRIME_STEP + stream * _PRIME_STREAM
            + prompt * _PRIME_PROMPT) % _MODULUS


def resample_stream(stream: int, attempt: int) -> int:
    """The stream of attempt `attempt` >= 1 of generating `stream`'s groups again (dynamic
    sampling): `stream + attempt * RESAMPLE_STREAM_STRIDE`, apart from every named stream."""
    if attempt < 1:
        raise ValueError(f"resample attempts count from 1, got {attempt}")
    return stream + attempt * RESAMPLE_STREAM_STRIDE


def chunk_seed(seed: int, index: int) -> int:
    """Seed of prompt chunk `index`: `seed` itself for chunk 0 (unsplit calls unchanged), a
    SplitMix64 mix of (seed, index) otherwise (63 bits, never equal to a nearby seed + b)."""
    if index == 0:
        return seed
    return _mix(seed, index)


def request_seed(seed: int, index: int) -> int:
    """Seed of request `index` of a vLLM call seeded with `seed`: a SplitMix64 mix of
    (seed, index + 1), 63 bits, so no two requests of a call, and no request and a chunk of
    the same call, share a generator (vLLM's own `n > 1` would seed sample j with seed + j,
    which a neighbouring prompt's seed can collide with)."""
    return _mix(seed, index + 1) ^ 0x5851F42D4C957F2D


def _mix(seed: int, index: int) -> int:
    """SplitMix64 finaliser of (seed, index), shifted to 63 bits."""
    z = (seed * _MIX + index * _MIX2) & _MASK64
    z = ((z ^ (z >> 30)) * _MIX2) & _MASK64
    z = ((z ^ (z >> 27)) * _MIX3) & _MASK64
    return (z ^ (z >> 31)) >> 1


def epoch_seed(seed: int, epoch: int) -> int:
    """Seed of the training prompts' permutation in epoch `epoch`: seed * 10007 + epoch."""
    return seed * _PRIME_EPOCH + epoch
