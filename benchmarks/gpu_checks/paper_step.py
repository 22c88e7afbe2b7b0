"""Check 5: one paper-shaped training step of the 0.6B random model, measured memory per
stage next to the memory model's (`benchmarks/memory_model.py`), stage times and the decode
chunking (`benchmarks/memory_measure.py`: FSDP2 over one rank, 24 policy + 8 momentum rows
of one 512-token prompt + NEW_TOKENS new tokens, no stop token, one micro-batch of 8).

Asserts every stage ran (validation included: twice the rollout's rows inside
`keeping_workspace()`), and on a GPU that no stage's measured peak exceeds RATIO_MAX x the
model's prediction (an under-estimate is what runs out of memory; the engines stay alive
through scoring and training, so the kept KV workspace is measured where it is held), that
the rollout ran in one decode loop on an empty GPU, and that validation left the kept
workspace at the rollout's rows. On CPU (smoke): a 2-layer Qwen3 of the same kind, 16 new
tokens, no memory measured.
"""

from __future__ import annotations

import argparse
import warnings

from gpu_checks.common import DEVICE, SMOKE, Check, main

NEW_TOKENS = 1024
RATIO_MAX = 1.5


def body(check: Check) -> None:
    import memory_measure

    args = argparse.Namespace(model="smoke" if SMOKE else "qwen3-0.6b", layers=None, prompts=1,
                              new_tokens=16 if SMOKE else NEW_TOKENS, device=DEVICE)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        out = memory_measure.measure(args)
    failed = [str(w.message) for w in caught if "CUDA graph capture failed" in str(w.message)]
    check.expect("no_graph_capture_fallback", not failed, failed[:1], "no capture failure")
    check.record(**out)
    stages = out["stages"]
    want = ["startup", "rollout", "scoring", "train", "optimizer", "ema", "validation"]
    check.expect("every_stage_ran", all(s in stages for s in want), sorted(stages), want)
    if SMOKE:
        return
    for stage, figures in stages.items():
        ratio = figures["measured_over_predicted"]
        check.expect(f"{stage}_memory_within_model", ratio is not None and ratio <= RATIO_MAX,
                     ratio, f"<= {RATIO_MAX} x predicted")
    check.expect("rollout_in_one_loop", out["decode_chunking"]["loops"] == 1,
                 out["decode_chunking"]["loops"], 1)
    kept = out["kept_workspace"]
    check.expect("validation_keeps_the_training_workspace",
                 kept["rows_after_validation"] == kept["rows_after_rollout"] is not None, kept,
                 "rows after validation == rows after the rollout")


if __name__ == "__main__":
    main("paper_step", body)
