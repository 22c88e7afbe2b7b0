"""Check 2: one update of scripted rollouts with fixed advantages, on the trainer's objects
(`build_run` on the `qwen3-0.6b-random` recipe), precision path against CPU fp32.

Fixed responses and advantages, loss = -sum(A_i * logp_it * mask) / sum(mask) through
`score_responses(with_grad=True)` under the run's training autocast (the trainer's log-prob
path). Asserts: gradient cosine >= COSINE_MIN between the CPU fp32 run and each of the GPU
mixed-precision run, the GPU FSDP run (one process) and the GPU LoRA run (against a CPU fp32
LoRA run); after `optimizer.step()` + the run's `after_update` + the EMA at 0.99: the bf16
generator copy equals the master cast exactly, and the momentum master equals
0.99 theta0 + 0.01 theta1 (fp32 rounding). On CPU (smoke) every arm runs on CPU. Without
peft (an optional extra) the LoRA comparison is skipped with the reason.
"""

from __future__ import annotations

import torch

from gpu_checks.common import (
    DEVICE,
    SMOKE,
    Check,
    main,
    missing_optional,
    qwen3_config,
    scratch,
)

COSINE_MIN = 0.99
MOMENTUM = 0.99


def _full(t: torch.Tensor) -> torch.Tensor:
    return (t.full_tensor() if hasattr(t, "full_tensor") else t).detach().float().cpu()


def _script(tokenizer, vocab: int):
    g = torch.Generator().manual_seed(0)
    prompts = [tokenizer.encode(p) for p in ("1+2=", "7*6=", "What is 9-4?")]
    rows = [p for p in prompts for _ in range(3)]  # 3 samples per prompt
    t = 12
    ids = torch.randint(5, min(vocab, 500), (len(rows), t), generator=g)
    lengths = torch.tensor([12, 7, 3, 12, 9, 1, 5, 12, 10])
    mask = torch.arange(t)[None] < lengths[:, None]
    adv = torch.linspace(-1.0, 1.0, len(rows))
    return rows, ids.masked_fill(~mask, 0), mask, adv


def _arm(name: str, device: str, *overrides: str):
    from mgrpo.rollout import score_responses
    from mgrpo.train.run.setup import build_run

    cfg = qwen3_config(f"model.device={device}", "algorithm.kl_coef=0.0", *overrides)
    run = build_run(cfg, scratch(f"update-{name}"))
    models = run.models
    policy = models.policy
    rows, ids, mask, adv = _script(models.tokenizer, policy.config.vocab_size)
    dev = next(policy.parameters()).device
    score = getattr(policy, "mgrpo_score", None)  # FSDP: the registered forward method
    autocast = models.train_autocast
    theta0 = {n: _full(p) for n, p in policy.named_parameters() if p.requires_grad}
    policy.train()
    models.optimizer.zero_grad(set_to_none=True)
    with torch.autocast(dev.type, dtype=autocast or torch.float32, enabled=autocast is not None):
        args = (rows, ids, mask, 1.0)
        logp, _ = (score(*args, with_grad=True) if score is not None
                   else score_responses(policy, *args, with_grad=True,
                                        pad_token_id=models.tokenizer.pad_token_id))
    m = mask.to(logp.device)
    loss = -(adv.to(logp.device)[:, None] * logp.float() * m).sum() / m.sum()
    loss.backward()
    policy.eval()
    grads = {n: _full(p.grad) for n, p in policy.named_parameters() if p.grad is not None}
    models.optimizer.step()
    models.optimizer.zero_grad(set_to_none=True)
    if models.after_update is not None:
        models.after_update()
    if models.momentum is not None:
        models.momentum.update_(policy, MOMENTUM)
    return run, grads, theta0


def _cosine(a: dict, b: dict) -> tuple[float, int]:
    names = sorted(set(a) & set(b))
    x = torch.cat([a[n].flatten() for n in names]).double()
    y = torch.cat([b[n].flatten() for n in names]).double()
    return float(x @ y / (x.norm() * y.norm()).clamp_min(1e-30)), len(names)


def body(check: Check) -> None:
    gpu = "cpu" if SMOKE else DEVICE
    _, ref, _ = _arm("cpu-fp32", "cpu")
    run, mixed, theta0 = _arm("mixed", gpu)
    cos, n = _cosine(ref, mixed)
    check.expect("grad_cosine_mixed_vs_cpu_fp32", cos >= COSINE_MIN and n > 0, cos, COSINE_MIN)

    models, policy = run.models, run.models.policy
    copy = models.policy_engine.model
    if copy is not policy:
        master = dict(policy.named_parameters())
        worst = max(float((p.detach() != master[n].detach().to(p.dtype)).sum())
                    for n, p in copy.named_parameters())
        check.expect("generator_copy_equals_master_cast", worst == 0, worst, "0 differing entries")
    else:
        check.record(generator_copy="the policy itself (fp32 layout): nothing to compare")
    if models.momentum is not None:
        state = models.momentum.state_dict()
        theta1 = {n: p.detach().float().cpu() for n, p in policy.named_parameters()}
        err, matched = 0.0, 0
        for name, value in state.items():
            key = name if name in theta0 else next((k for k in theta0 if k.endswith(name)), None)
            if key is None:
                continue
            matched += 1
            want = MOMENTUM * theta0[key] + (1 - MOMENTUM) * theta1[key]
            err = max(err, float((value.float().cpu() - want).abs().max()))
        check.record(momentum_tensors_compared=matched)
        check.expect("momentum_is_ema_of_theta0_theta1", matched > 0 and err <= 1e-5, err, 1e-5)

    absent = missing_optional("peft")
    if absent:  # LoRA is an optional extra: skipped with the reason, never a failure
        check.skip("grad_cosine_lora_vs_cpu_fp32_lora", absent)
    else:
        try:  # a LoRA failure must not stop the FSDP arm
            _, lora_ref, _ = _arm("lora-cpu", "cpu", "model.lora.r=8", "model.lora.alpha=16")
            _, lora, _ = _arm("lora", gpu, "model.lora.r=8", "model.lora.alpha=16")
            cos, n = _cosine(lora_ref, lora)
        except Exception as exc:  # noqa: BLE001 - reported as this assertion's failure
            cos, n = f"{type(exc).__name__}: {exc}", 0
        check.expect("grad_cosine_lora_vs_cpu_fp32_lora",
                     n > 0 and isinstance(cos, float) and cos >= COSINE_MIN, cos, COSINE_MIN)

    _, fsdp, _ = _arm("fsdp1", gpu, "distributed.fsdp=true")  # last: it opens a process group
    cos, n = _cosine(ref, fsdp)
    check.expect("grad_cosine_fsdp1_vs_cpu_fp32", cos >= COSINE_MIN and n > 0, cos, COSINE_MIN)


if __name__ == "__main__":
    main("update", body)
