"""Periodic validation during training, through the evaluation harness.

The trainer's `val/*` metrics come from `mgrpo.eval.runner.evaluate_records`, the
same code `mgrpo eval` runs, sampling from the live policy through its rollout engine, so
a training curve and `mgrpo eval` on the saved checkpoint agree (same prompts, settings
and seed give the same numbers). Under data parallelism each rank samples and grades its
share of the evaluation batches (batch b on rank b mod W, with the seed batch b always
has) and the graded results are gathered, so every rank reports the metrics of the whole
set, the same as one process.
"""

from __future__ import annotations

import contextlib
from typing import Any

from mgrpo.eval.runner import evaluate_records
from mgrpo.parallel import distributed as D
from mgrpo.rollout import SamplingParams
from mgrpo.seeds import VALIDATION_STREAM, step_seed
from mgrpo.train.run.setup import Run


def run_validation(run: Run, *, step: int) -> dict[str, float]:
    """Accuracy (avg@k), maj@k, pass@k and mean length of the policy on the validation set."""
    cfg, models = run.cfg, run.models
    val = cfg.validation
    params = SamplingParams(
        max_new_tokens=val.max_new_tokens or cfg.generation.max_new_tokens,
        temperature=val.temperature,
        top_p=cfg.generation.top_p if val.temperature > 0 else 1.0,
        stop_token_ids=models.stop_token_ids,
        seed=step_seed(cfg.seed, step, VALIDATION_STREAM),
    )
    engine = models.policy_engine
    keep = getattr(engine, "keeping_workspace", contextlib.nullcontext)
    # fast engine on CUDA: decode inside the kept training workspace (loops of at most its
    # rows; never grown, its graphs kept), so what stays through the backward is a training
    # call's KV, not validation's (`rollout.workspace`)
    with keep():
        result = evaluate_records(
            engine,
            models.tokenizer,
            run.val_records,
            kind=cfg.data.answer_kind,
            samples=val.samples,
            params=params,
            template=cfg.data.template,
            checker=models.checker,
            suffix=cfg.data.suffix,
            system_prompt=cfg.data.system_prompt,
            chat_template_kwargs=cfg.data.chat_template_kwargs,
            **_split(models.dist),
        )
    out = {"accuracy": float(result["accuracy"]), "response_length": float(result["response_length_mean"])}
    if val.samples > 1:
        if result.get("maj@k") is not None:
            out["maj@k"] = float(result["maj@k"])
        out["pass@k"] = float(result["pass@k"])
    return out


def _split(ctx: D.DistContext | None) -> dict[str, Any]:
    """evaluate_records arguments that share the batches over the ranks (none on one)."""
    if ctx is None or not ctx.active or ctx.world_size == 1:
        return {}
    return {
        "shard": (ctx.rank, ctx.world_size),
        "gather": lambda part: D.gather_objects(ctx, part, stage="validation"),
    }
