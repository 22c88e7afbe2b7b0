"""Check 1: CUDA graphs replay what eager decoding computes, the copies rotate with fp32
frequencies, and rollout log-probs match the training forward at every position.

On the trainer's own objects (`mgrpo.train.run.setup.build_run` on the `qwen3-0.6b-random`
recipe: a Qwen3-0.6B-shaped random model; on CPU its smoke twin), with every RMSNorm weight
random (all-ones norms hide a stale copy of the q/k norm weights):
- graphed vs eager greedy decode, token-identical, for one call, for a call split by a
  forced KV budget, and for three calls on one kept workspace with an in-place change of the
  q/k norm weights before the 2nd and 3rd (the graphs must replay, not be recaptured, and
  read the new weights). "Eager" is the same static decode step run without capture (the
  engine's eager mode attends over another span, so its fp rounding differs). On CPU the
  graphs are "captured" with `cuda_graph.capture_eager` (the cache bookkeeping runs, the
  replay runs the step again).
- `inv_freq` of every rotary module is fp32 on the generator, reference and momentum copies
  (bf16 frequencies rotate position p by an angle off by ~p * 1e-3 rad at Qwen3's theta).
- rollout log-probs (the generator's decode) minus the training forward's (fp32 master under
  the trainer's autocast) by response position: mean |gap| per position bucket <= GAP_LIMIT
  and not growing with position (last bucket <= 2 x first + GAP_SLACK).
- captures per training step: three `train_step`s with a validation of twice the step's rows
  between the 2nd and the 3rd; the kept workspace keeps its rows through validation, no graph
  is evicted, and the steps after the first capture fewer graphs than the first.
- no "CUDA graph capture failed" warning anywhere (the engine would fall back to eager
  decoding, correct but slow: a FAIL here).
"""

from __future__ import annotations

import dataclasses
import warnings

import torch

from gpu_checks.common import SMOKE, Check, device, main, qwen3_config, randomize_norms, scratch

GAP_LIMIT = 0.1  # nats, mean |logp_rollout - logp_train| per position bucket
GAP_SLACK = 0.02


def _engines(model, pad: int):
    from mgrpo.rollout import make_engine
    from mgrpo.rollout.cuda_graph import GraphCache, capture_eager

    graphed = make_engine("fast", model, pad_token_id=pad, cuda_graph=True)
    eager = make_engine("fast", model, pad_token_id=pad, cuda_graph=False)
    eager.static = True  # the captured step's form, launched kernel by kernel
    if SMOKE:  # no CUDA: the graph cache with the eager "capture"
        graphed.static = True
        graphed.graphs = GraphCache(capture=capture_eager)
    return graphed, eager


def _same_tokens(a, b) -> bool:
    return torch.equal(a.response_ids.cpu(), b.response_ids.cpu())


def _rotary_dtypes(model) -> list[str]:
    return sorted({str(m.inv_freq.dtype) for m in model.modules() if hasattr(m, "inv_freq")})


def body(check: Check) -> None:
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        _body(check)
    failed = [str(w.message) for w in caught if "CUDA graph capture failed" in str(w.message)]
    check.expect("no_graph_capture_fallback", not failed, failed[:1], "no capture failure")


def _captures_per_step(check: Check, new: int) -> None:
    """Three training steps, a validation of twice the step's rows after the 2nd."""
    from mgrpo.rollout.cuda_graph import GraphCache, capture_eager
    from mgrpo.train.run.validation import run_validation
    from mgrpo.train.step import StepBatch, train_step

    cfg = qwen3_config(f"generation.max_new_tokens={new}", "validation.data=arithmetic",
                       f"validation.max_new_tokens={new}", "validation.samples=8",
                       "validation.limit=2" if SMOKE else "validation.limit=16")
    run = build_run_in(cfg, "graphs-steps")
    engine = run.models.policy_engine
    if SMOKE:  # no CUDA: the graph cache with the eager "capture"
        engine.static = True
        engine.graphs = GraphCache(capture=capture_eager)
    per_step, rows = [], {}
    for step in (1, 2, 3):
        before = engine.graphs.captures
        records, ids = run.train_set.batch(step, cfg.trainer.prompts_per_step)
        train_step(run.models, StepBatch(ids, [r.answer for r in records]), cfg, run.spec, step)
        per_step.append(engine.graphs.captures - before)
        rows[f"after_step_{step}"] = engine._workspace.rows
        if step == 2:
            run_validation(run, step=step)
            rows["after_validation"] = engine._workspace.rows
    run.models.checker.close()
    check.record(captures_per_step=per_step, workspace_rows=rows,
                 graph_evictions=engine.graphs.evictions, graphs_alive=engine.graphs.graphs_alive)
    check.expect("validation_keeps_the_workspace_rows",
                 rows["after_validation"] == rows["after_step_2"] == rows["after_step_3"], rows)
    check.expect("no_graph_evicted", engine.graphs.evictions == 0, engine.graphs.evictions, 0)
    check.expect("later_steps_capture_less", max(per_step[1:]) < per_step[0], per_step,
                 "steps 2 and 3 < step 1")


def build_run_in(cfg, name: str):
    from mgrpo.train.run.setup import build_run

    return build_run(cfg, scratch(name))


def _body(check: Check) -> None:
    from mgrpo.rollout import SamplingParams, score_responses
    from mgrpo.rollout.memory import GIB, kv_shape
    from mgrpo.train.run.setup import build_run

    new = 16 if SMOKE else 96
    cfg = qwen3_config("algorithm.kl_coef=0.01", f"generation.max_new_tokens={new}")
    run = build_run(cfg, scratch("graphs-run"))
    models = run.models
    policy = models.policy
    randomize_norms(policy, seed=0)
    if models.after_update is not None:  # the bf16 generator copy = the master cast
        models.after_update()
    gen_model = models.policy_engine.model
    tok = models.tokenizer
    pad = tok.pad_token_id
    prompts = [tok.encode(p) for p in ("1+2=", "What is 17*3? Answer:", "x", "9-4=")]
    greedy = SamplingParams(max_new_tokens=new, temperature=0.0, seed=0, stop_token_ids=())

    graphed, eager = _engines(gen_model, pad)
    one = graphed.generate(prompts, 4, greedy)
    check.expect("graphed_equals_eager_one_call", _same_tokens(one, eager.generate(prompts, 4, greedy)))

    # a budget of two prompts per loop: the call splits into two loops
    dtype = gen_model.get_input_embeddings().weight.dtype
    per_prompt = kv_shape(gen_model.config, dtype).prompt_bytes(4, 1, max(map(len, prompts)), new)
    split_g, split_e = _engines(gen_model, pad)
    split_g.kv_cache_gb = split_e.kv_cache_gb = 2.5 * per_prompt / GIB
    loops = -(-len(prompts) // split_g.plan_chunks(prompts, [4], new))
    check.expect("budget_forces_a_split", loops > 1, loops, "> 1 loops")
    check.expect("graphed_equals_eager_split", _same_tokens(
        split_g.generate(prompts, 4, greedy), split_e.generate(prompts, 4, greedy)))

    # three calls on the kept workspace, q/k norm weights changed in place between calls
    kept, _ = _engines(gen_model, pad)
    captures, same = [], []
    for call in range(3):
        if call:
            with torch.no_grad():
                for layer in gen_model.model.layers:
                    layer.self_attn.q_norm.weight.mul_(1.0 + 0.2 * call)
                    layer.self_attn.k_norm.weight.add_(0.1 * call)
        _, fresh = _engines(gen_model, pad)
        same.append(_same_tokens(kept.generate(prompts, 4, greedy), fresh.generate(prompts, 4, greedy)))
        captures.append(kept.graphs.captures if kept.graphs is not None else None)
    check.expect("graphed_equals_eager_kept_workspace_x3", all(same), same)
    check.expect("kept_workspace_replays", captures[0] and captures[0] == captures[-1], captures,
                 "captures after call 1 == after call 3")
    if models.after_update is not None:  # undo: the copy equals the master cast again
        models.after_update()

    copies = {"generator": gen_model, "reference": models.reference,
              "momentum": getattr(models.momentum, "generator", None), "master": policy}
    dtypes = {k: _rotary_dtypes(m) for k, m in copies.items() if m is not None}
    check.record(inv_freq_dtypes=dtypes)
    for name, found in dtypes.items():
        check.expect(f"inv_freq_fp32_{name}", found == ["torch.float32"], found, "torch.float32")

    sample = dataclasses.replace(greedy, temperature=1.0, seed=1)
    batch = models.policy_engine.generate(prompts, 4, sample)
    rows = [prompts[int(i)] for i in batch.prompt_index.tolist()]
    autocast = models.train_autocast
    policy.train()
    try:
        with torch.autocast(device().type, dtype=autocast, enabled=autocast is not None):
            logp, _ = score_responses(policy, rows, batch.response_ids, batch.response_mask,
                                      1.0, pad_token_id=pad)
    finally:
        policy.eval()
    mask = batch.response_mask.to(logp.device)
    gap = (batch.logprobs.to(logp.device).float() - logp.float()).abs() * mask
    edges = [0, 8, 32, 64, new] if not SMOKE else [0, 4, 8, new]
    buckets = {}
    for lo, hi in zip(edges, edges[1:], strict=False):
        m = mask[:, lo:hi]
        if m.any():
            buckets[f"{lo}-{hi}"] = float(gap[:, lo:hi].sum() / m.sum())
    check.record(logp_gap_by_position=buckets, logp_gap_max=float(gap.max()))
    values = list(buckets.values())
    check.expect("logp_gap_small", max(values) <= GAP_LIMIT, max(values), GAP_LIMIT)
    check.expect("logp_gap_not_growing", values[-1] <= 2 * values[0] + GAP_SLACK,
                 [values[0], values[-1]], "last <= 2 x first + 0.02")
    _captures_per_step(check, new)


if __name__ == "__main__":
    main("graphs", body)
