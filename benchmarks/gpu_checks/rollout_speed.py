"""Check 5: rollout speed, the first GPU throughput numbers from the first device lent.

Runs `benchmarks/rollout.py --device cuda` at a small size (Qwen3-0.6B shape, random bf16
weights, PROMPTS x SAMPLES rows of PROMPT_LEN + NEW_TOKENS tokens, median of REPEATS calls
after a warm-up; no compiled baseline) in a child process, alone on the GPU, and reports
its `fast_tok_per_s`, `hf_tok_per_s`, the speed-up and `fraction_of_floor` (fast / the
memory-bandwidth floor measured in the same process). Asserts the benchmark ran, the fast
engine's greedy tokens equal HF's, no CUDA graph capture fell back to eager, and the fast
engine is faster than `hf` (generate + a scoring pass, the same outputs). On CPU (smoke):
`--quick` (tiny model, a few tokens), the same figures minus the floor.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from gpu_checks.common import SMOKE, Check, main

SCRIPT = Path(__file__).resolve().parents[1] / "rollout.py"
PROMPTS, SAMPLES, PROMPT_LEN, NEW_TOKENS, REPEATS = 8, 8, 128, 128, 3
CAPTURE_FAILED = "CUDA graph capture failed"


def body(check: Check) -> None:
    size = (["--quick"] if SMOKE else
            ["--device", "cuda", "--shape", "qwen3-0.6b", "--prompts", str(PROMPTS),
             "--samples", str(SAMPLES), "--prompt-len", str(PROMPT_LEN),
             "--new-tokens", str(NEW_TOKENS), "--repeats", str(REPEATS), "--skip-compiled",
             "--skip-generate-only"])
    cmd = [sys.executable, str(SCRIPT), *size]
    print("$", " ".join(cmd), flush=True)
    done = subprocess.run(cmd, capture_output=True, text=True)
    print(done.stdout[-4000:], done.stderr[-3000:], flush=True)
    check.expect("benchmark_ran", done.returncode == 0, done.returncode, 0)
    lines = [line for line in done.stdout.splitlines() if line.startswith("{")]
    if not lines:
        return
    result = json.loads(lines[-1])
    keys = ("device", "model_shape", "batch", "prompt_len", "new_tokens", "fast_tok_per_s",
            "fast_eager_tok_per_s", "hf_tok_per_s", "speedup_vs_hf", "floor_tok_per_s",
            "fraction_of_floor", "copy_bandwidth_gb_s", "torch", "transformers")
    check.record(**{k: result[k] for k in keys if k in result})
    check.expect("greedy_tokens_equal_hf", result.get("greedy_match") is True,
                 result.get("greedy_match"), True)
    log = done.stdout + done.stderr
    check.expect("no_graph_capture_fallback", CAPTURE_FAILED not in log, CAPTURE_FAILED in log)
    if not SMOKE:
        check.expect("fast_beats_hf", result["speedup_vs_hf"] > 1.0, result["speedup_vs_hf"],
                     "> 1")
        check.expect("fraction_of_floor_reported", result.get("fraction_of_floor") is not None,
                     result.get("fraction_of_floor"))


if __name__ == "__main__":
    main("rollout", body)
