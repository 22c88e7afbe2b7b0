"""One M-GRPO training step, top to bottom (docs/design.md §2): `train_step` is Algorithm 1.

    policy rollouts (M [+ V vote-only]) and momentum rollouts (N) for B prompts
    -> trajectory entropies (B, G) -> IQR keep mask -> answers -> majority vote (pseudo-labels)
    -> rewards (B, M) [-> dynamic sampling: constant groups generated again]
    -> loss set -> group advantages -> frozen logp_old / logp_ref
    -> mu x U x [ gradient over the update's micro-batches -> optimizer step -> EMA ]

Every preset runs this same function; what differs is the `AlgorithmSpec` (the method's spec,
`mgrpo.methods`, resolved by `train/algorithm.py`), whose reward terms are functions of
`RewardInputs` with the method's parameters bound. The records between the stages are in
`train/types.py` (the scored pool, `Rollouts`, in `methods/inputs.py`); the shaping options
in `train/step_shaping.py`; the timers (named for what they time) and the metrics in
`train/logs/step_metrics.py`; micro-batching and the frozen passes in `train/step_updates.py`;
the joint-or-separate decode and the seeding mode in `rollout/groups.py`; the seeds and
their streams in `mgrpo/seeds.py`.

Departures from the paper: none in the math; each engineering choice is stated at its line.

Device rule. The rollout engines return their tensors on the model's device D (the GPU in a
real run, the CPU in tests). Every tensor indexed by rollout row stays on D for the whole
step: trajectory entropies, the IQR keep mask, rewards, the loss set, advantages, the
`logp_old` / `logp_ref` buffers and every row index (`prompt_index`, `step_updates.chunks`,
`step_updates.policy_train_rows`). Values that exist only on the host (decoded answers,
votes, prompt token lists) are Python objects; a tensor built from them (`rewards.agreement`,
`self_certainty`) is moved to D where it is made. The per-rollout statistics go to the CPU
once, in `step_metrics.metric_inputs`, because they are pickled to the other ranks. LoRA and
FSDP change which module runs a forward, never where its outputs live; validation and
`mgrpo eval` read only Python values out of the rollouts. Mixed precision: the training
forward runs under `StepModels.train_autocast` (bf16 compute over an fp32 master) when set.

Modes: the policy is in train mode only for its training forwards (gradient checkpointing
and LoRA dropout act there, `logp_old` included) and in eval mode for rollouts and the other
no-grad passes.

Distributed (`parallel/distributed.py`): the batch holds this rank's slice of the step's
prompts (`StepBatch.prompt_offset` / `global_prompts`); loss normalisers are summed over
ranks so the summed gradient equals the 1-rank gradient, and the metrics are computed by the
1-rank formulas on the gathered per-rollout statistics.
"""

from __future__ import annotations

import dataclasses
import functools
import time

import torch

from mgrpo.answers import extract_answer
from mgrpo.answers.equivalence import Equivalence
from mgrpo.config import Config, GenerationConfig
from mgrpo.core.advantages import get_advantage_estimator
from mgrpo.core.entropy import trajectory_entropy
from mgrpo.core.filtering import iqr_keep_mask
from mgrpo.core.voting import vote_groups
from mgrpo.methods import AlgorithmSpec, RewardInputs, Rollouts
from mgrpo.models.protocol import Tokenizer
from mgrpo.parallel.distributed import gather_objects
from mgrpo.rollout import RolloutBatch, SamplingParams
from mgrpo.rollout.groups import generate_groups
from mgrpo.seeds import (
    MOMENTUM_STREAM,
    PARAPHRASE_STREAM,
    POLICY_STREAM,
    VOTE_TIE_STREAM,
    resample_stream,
    step_seed,
)
from mgrpo.train.logs.samples import SampleRecord, sample_records
from mgrpo.train.logs.step_metrics import (
    MetricInputs,
    StageTimer,
    loss_and_time_metrics,
    metric_inputs,
    step_metrics,
)
from mgrpo.train.rewards import mix_rewards
from mgrpo.train.step_resample import ScoredPool, resample_constant_groups
from mgrpo.train.step_shaping import shape_step
from mgrpo.train.step_updates import (
    NonFiniteLossError,
    accumulate_gradients,
    clip_gradients,
    frozen_logprobs,
    loss_set,
    policy_train_rows,
    train_mode,
)
from mgrpo.train.types import LossStats, StepBatch, StepModels, UpdateSettings

__all__ = ["NonFiniteLossError", "StepBatch", "StepModels", "rollout_params", "train_step"]


def train_step(models: StepModels, batch: StepBatch, cfg: Config, spec: AlgorithmSpec,
               step: int, samples: list[SampleRecord] | None = None) -> dict[str, float]:
    """Run one training step in place (optimizer, scheduler, momentum); return its metrics.

    `samples`: a list to which the step appends one `train.samples.SampleRecord` per prompt
    of the step (all ranks' prompts, gathered; every rank must pass one or none).

    Raises NonFiniteLossError (after zeroing grads, without stepping) when the loss or the
    gradient norm is not finite, so the caller can count and stop after repeated failures.
    """
    timer, step_start = StageTimer(device=_model_device(models.policy)), time.perf_counter()
    settings = UpdateSettings.of(cfg, spec)
    B, M, V, N = len(batch.prompt_ids), spec.policy_rollouts, spec.vote_only_rollouts, spec.momentum_rollouts
    equivalent = Equivalence.for_kind(models.checker, cfg.data.answer_kind)  # as evaluation

    with timer("generate"):  # one decode loop for both models when the engines allow it
        groups = [(models.policy_engine, M + V, POLICY_STREAM)]
        groups += [(models.momentum_engine, N, MOMENTUM_STREAM)] if N else []
        params = functools.partial(rollout_params, cfg.generation, models.stop_token_ids, cfg.seed, step)
        policy, *momentum = generate_groups(batch.prompt_ids, groups, params,
                                            prompt_offset=batch.prompt_offset,
                                            per_prompt=cfg.distributed.seed_per_prompt)
        if spec.paraphrases:  # co-rewarding-i: each prompt's rephrased twin samples its own group
            policy = _with_twins(models, batch, policy, M + V, params, cfg)
            batch, B = batch.with_twins(), 2 * B  # from here on: B questions, then B twins
    # vote: entropies (B, G) -> IQR keep (B, G) -> answers (B, G) -> votes (B,);
    # reward: rewards (B, M) -> shaped rewards and loss set (B, M)
    rescore = functools.partial(_scored_pool, models, batch, cfg, spec, step, equivalent, timer)
    pool = rescore(policy, momentum[0] if N else None)
    resampled = None
    if spec.shaping.dynamic_sampling == "resample":  # DAPO: constant groups generated again
        pool, resampled = resample_constant_groups(
            pool, budget=spec.shaping.resample_budget or (batch.global_prompts or B),
            prompt_offset=batch.prompt_offset, groups=(M + V, N), rescore=rescore,
            regenerate=functools.partial(_regenerate, models, batch, cfg, spec, step, timer),
            pad_token_id=_pad_id(models.tokenizer), ctx=models.dist)
    rollouts, train, shaped = pool.rollouts, pool.train, pool.shaped
    with timer("reward"):
        advantages = get_advantage_estimator(spec.loss.advantage)(shaped.rewards,
                                                                  shaped.in_loss)  # (B, M)
        if spec.advantage_transform is not None:  # restrain: prompt weights and penalty
            advantages = spec.advantage_transform(pool.inputs, advantages, shaped.in_loss)
    ls = loss_set(train, shaped.in_loss, advantages)  # rows outside the loss set: never forwarded
    with timer("logprobs"):  # before any update; logp_old only when mu U > 1 (else: detached)
        logp_old, logp_ref = frozen_logprobs(_kl_target(models, spec), batch, settings, ls)

    stats = LossStats()
    for epoch in range(settings.epochs):  # mu passes over the same rollouts and logp_old
        for update in range(settings.updates_per_step):  # U GRPO updates, each on B / U prompts
            with timer("train"), train_mode(models.policy):
                models.optimizer.zero_grad(set_to_none=True)
                stats.add(accumulate_gradients(models, batch, settings, ls, update, logp_old,
                                               logp_ref, step, epoch))
                stats.grad_norms.append(clip_gradients(models, settings.max_grad_norm, step))
                models.optimizer.step()
                models.optimizer.zero_grad(set_to_none=True)
            with timer("sync"):  # refresh the bf16 / unsharded generator copy from the new weights
                if models.after_update is not None:
                    models.after_update()
                models.policy_engine.sync_weights()  # vllm: push them (hf, fast read them live)
            with timer("ema"):  # theta_k <- m theta_k + (1 - m) theta_q after EVERY optimizer step
                if models.momentum is not None:
                    models.momentum.update_(models.policy,
                                            spec.momentum_at(step, cfg.trainer.max_steps))
                if models.momentum_engine is not None:
                    models.momentum_engine.sync_weights()  # vllm: the momentum weights, likewise
    lr = models.optimizer.param_groups[0]["lr"]
    models.scheduler.step()

    if samples is not None:
        local_samples = _sample_records(models, batch, rollouts, shaped.rewards, step)
        samples.extend(r for part in gather_objects(models.dist, local_samples, stage="samples")
                       for r in part)
    local = metric_inputs(batch, rollouts, shaped.rewards, equivalent, shaped.stats)
    metrics = step_metrics(
        MetricInputs.cat(gather_objects(models.dist, local, stage="step metrics")), M)
    if resampled is not None:
        metrics.update(resampled.as_metrics())
    metrics.update(loss_and_time_metrics(models.dist, stats, lr, timer.times,
                                         time.perf_counter() - step_start,
                                         with_sync=(models.after_update is not None
                                                    or models.policy_engine.holds_weights_copy)))
    return metrics


def _scored_pool(models: StepModels, batch: StepBatch, cfg: Config, spec: AlgorithmSpec,
                 step: int, equivalent: Equivalence, timer: StageTimer, policy: RolloutBatch,
                 momentum: RolloutBatch | None) -> ScoredPool:
    """Score the pool (timer `vote`), then reward and shape the train rollouts (`reward`)."""
    B, M, V = len(batch.prompt_ids), spec.policy_rollouts, spec.vote_only_rollouts
    with timer("vote"):  # entropies (B, G) -> IQR keep (B, G) -> answers (B, G) -> votes (B,)
        tie_seeds = [step_seed(cfg.seed, step, VOTE_TIE_STREAM, batch.global_index(b))
                     for b in range(B)]
        rollouts = score_rollouts(models, policy, momentum, spec, B, cfg.data.answer_kind,
                                  equivalent, tie_seeds)
    with timer("reward"):
        train = policy.select(policy_train_rows(B, M, V, rollouts.keep.device))  # (B*M, T)
        inputs = RewardInputs(pool=rollouts, train=train, prompt_ids=batch.prompt_ids,
                              truths=batch.answers, equivalent=equivalent,
                              sampler=models.policy_full or models.policy,
                              tokenizer=models.tokenizer, temperature=cfg.generation.temperature,
                              step=step, seed=cfg.seed, prompt_offset=batch.prompt_offset,
                              twins=batch.twins)
        in_loss = (rollouts.keep[:, :M].clone() if spec.filter_in_loss  # scope loss, vote+loss
                   else torch.ones(B, M, dtype=torch.bool, device=rollouts.keep.device))  # (B, M)
        rewards = mix_rewards([term.fn(inputs) for term in spec.rewards],
                              [term.weight for term in spec.rewards], spec.reward_norm,
                              in_loss)  # (B, M) on D
        shaped = shape_step(rewards, in_loss, train, spec.shaping, cfg.generation.max_new_tokens)
    return ScoredPool(policy, momentum, rollouts, train, shaped, inputs)


def _regenerate(models: StepModels, batch: StepBatch, cfg: Config, spec: AlgorithmSpec,
                step: int, timer: StageTimer, prompts: list[int], attempt: int
                ) -> tuple[RolloutBatch, RolloutBatch | None]:
    """New groups (policy M + V, momentum N rollouts) for the local prompts `prompts`, attempt
    `attempt` of dynamic sampling: the streams `resample_stream(stream, attempt)`, each prompt
    seeded by its global index as in the step's own call (per-prompt mode), or the sub-batch by
    the slice's offset (one call)."""
    M, V, N = spec.policy_rollouts, spec.vote_only_rollouts, spec.momentum_rollouts
    per_prompt = cfg.distributed.seed_per_prompt
    groups = [(models.policy_engine, M + V, resample_stream(POLICY_STREAM, attempt))]
    groups += [(models.momentum_engine, N, resample_stream(MOMENTUM_STREAM, attempt))] if N else []

    def params(stream: int, index: int) -> SamplingParams:  # index: 0, or sub-batch b + 1
        prompt = batch.prompt_offset + (prompts[index - 1] + 1 if per_prompt else 0)
        return rollout_params(cfg.generation, models.stop_token_ids, cfg.seed, step, stream,
                              prompt)

    with timer("generate"):
        policy, *momentum = generate_groups([batch.prompt_ids[b] for b in prompts], groups,
                                            params, prompt_offset=0, per_prompt=per_prompt)
    return policy, momentum[0] if N else None


def _pad_id(tokenizer: Tokenizer) -> int:
    """The tokenizer's pad id (0 without one): the filler of spliced rollout batches."""
    pad = getattr(tokenizer, "pad_token_id", None)
    return int(pad) if pad is not None else 0


def _with_twins(models: StepModels, batch: StepBatch, policy: RolloutBatch, n: int,
                params: functools.partial, cfg: Config) -> RolloutBatch:
    """The policy rollouts of the B prompts, then n of each prompt's rephrased twin (stream
    `PARAPHRASE_STREAM`, so the twins' samples are drawn apart from the questions'): one
    prompt-major batch over 2B prompts."""
    (twin,) = generate_groups(batch.twin_ids, [(models.policy_engine, n, PARAPHRASE_STREAM)],
                              params, prompt_offset=batch.prompt_offset,
                              per_prompt=cfg.distributed.seed_per_prompt)
    B = len(batch.prompt_ids)
    return RolloutBatch.cat([policy, twin], [B, B])


def rollout_params(gen: GenerationConfig, stop_token_ids: tuple[int, ...], seed: int, step: int,
                   stream: int, prompt: int) -> SamplingParams:
    """The training rollouts' sampling parameters for (stream, global prompt index), seeded
    by `seeds.step_seed(seed, step, stream, prompt)`."""
    return SamplingParams(
        max_new_tokens=gen.max_new_tokens, temperature=gen.temperature, top_p=gen.top_p,
        top_k=gen.top_k, stop_token_ids=stop_token_ids,
        seed=step_seed(seed, step, stream, prompt),
    )


def score_rollouts(models: StepModels, policy: RolloutBatch, momentum: RolloutBatch | None,
                   spec: AlgorithmSpec, B: int, answer_kind: str,
                   equivalent: Equivalence, tie_seeds: list[int] | None = None) -> Rollouts:
    """Trajectory entropies, the IQR keep mask, parsed answers and (`spec.votes`) the votes by
    `spec.vote`: over the kept answers (every answer unless `filter_in_vote`; only the
    momentum ones unless `policy_votes`), a momentum vote counting `momentum_weight` times,
    ties by `ties` (`tie_seeds`: one per prompt, for the random rule).

    The pool is G = M + V + N wide: each prompt's policy rollouts, then its momentum ones."""
    policy_entropy = trajectory_entropy(policy.entropies, policy.response_mask).view(B, -1)
    momentum_entropy = (None if momentum is None else
                        trajectory_entropy(momentum.entropies, momentum.response_mask).view(B, -1))
    entropy = (policy_entropy if momentum_entropy is None
               else torch.cat([policy_entropy, momentum_entropy], dim=1))  # (B, G)
    keep = iqr_keep_mask(entropy, spec.iqr_k)  # (B, G) on D; all True when the filter is off
    texts, answers = _answers(models.tokenizer, policy, B, answer_kind)  # (B, M+V)
    if momentum is not None:
        more_texts, more = _answers(models.tokenizer, momentum, B, answer_kind)
        answers = [row + m for row, m in zip(answers, more)]  # (B, G)
        texts = [row + m for row, m in zip(texts, more_texts)]
    n_policy = policy_entropy.shape[1]  # M + V
    rule = spec.vote
    voters = (keep.tolist() if rule.filter_in_vote  # scope loss: every answer votes
              else [[True] * keep.shape[1] for _ in range(B)])
    if not rule.policy_votes:  # co-rewarding-ii: only the teacher (momentum) rollouts vote
        voters = [[k and g >= n_policy for g, k in enumerate(row)] for row in voters]
    votes = (vote_groups(answers, equivalent, rule.min_share, keep=voters,
                         momentum_from=n_policy, momentum_weight=rule.momentum_weight,
                         ties=rule.ties, seeds=tie_seeds)
             if spec.votes else [])
    return Rollouts(spec.policy_rollouts, policy, momentum, policy_entropy, momentum_entropy,
                    keep, answers, votes, texts)


def _answers(tokenizer: Tokenizer, rollouts: RolloutBatch, B: int, kind: str
             ) -> tuple[list[list[str]], list[list[str | None]]]:
    """Decoded texts and parsed final answers, each (B, R / B), of a prompt-major batch of R
    rollouts."""
    ids = [row[mask].tolist() for row, mask in zip(rollouts.response_ids, rollouts.response_mask)]
    texts = tokenizer.batch_decode(ids, skip_special_tokens=True)
    flat = [extract_answer(text, kind=kind) for text in texts]
    per = len(flat) // B
    return ([texts[b * per : (b + 1) * per] for b in range(B)],
            [flat[b * per : (b + 1) * per] for b in range(B)])


def _kl_target(models: StepModels, spec: AlgorithmSpec) -> StepModels:
    """The models whose `reference` the KL term reads: the momentum (teacher) model's
    generator under `spec.kl_to_teacher` (Co-rewarding-II's KL to the teacher), else the
    frozen initial model."""
    if not spec.kl_to_teacher:
        return models
    teacher = getattr(models.momentum, "generator", None)
    if teacher is None:
        raise ValueError("algorithm.kl_to_teacher needs a momentum model with a generator "
                         f"(this layout's momentum is {type(models.momentum).__name__})")
    # LoRA: the generator is the shared policy; the momentum adapters are swapped in to score
    scope = getattr(models.momentum, "swapped_in", None)
    return dataclasses.replace(models, reference=teacher, reference_scope=scope)


def _sample_records(models: StepModels, batch: StepBatch, rollouts: Rollouts,
                    rewards: torch.Tensor, step: int) -> list[SampleRecord]:
    """This rank's `samples.jsonl` records: each prompt and its pool, in pool order."""
    entropy = rollouts.entropy  # (B, G)
    B = len(batch.prompt_ids)
    return sample_records(
        step, models.tokenizer.batch_decode(batch.prompt_ids, skip_special_tokens=False),
        [v.label for v in rollouts.votes] if rollouts.votes else [None] * B,
        list(batch.answers), rollouts.texts, rollouts.answers, entropy.float().cpu().tolist(),
        rollouts.keep.cpu().tolist(), rewards.float().cpu().tolist(),
        n_policy=rollouts.policy_entropy.shape[1])


def _model_device(model: torch.nn.Module) -> torch.device:
    """The device of the model's first parameter (a DTensor reports its local device)."""
    return next(model.parameters()).device
