#!/usr/bin/env bash
# Every GPU check in one run, for a lent device machine: the GPU tests, then the real CLI on a
# random model of Qwen3-0.6B's shapes (recipe `qwen3-0.6b-random`, built in code, no hub):
#   mgrpo train, 3 steps, per preset (m-grpo, srt, ttrl, intuitor, grpo); LoRA; FSDP with one
#   process under torchrun; a stopped run continued with --resume; mgrpo eval of the exported
#   checkpoint; the rollout benchmark; the one-step scale benchmark; measured memory per stage
#   next to the memory model's prediction (benchmarks/memory_measure.py).
# One log per check under $OUT (the device tool's output folder; ./gpu-results elsewhere). A
# failing check does not stop the others; summary.txt lists each check's status and seconds.
# Budget: ~9 minutes on one H100/H200 (BUDGET seconds, default 540; a check that would start
# with less than 20 s left is skipped and reported as such).
#
#   bash benchmarks/gpu_checks.sh                     # on the GPU machine
#   DEVICE=cpu bash benchmarks/gpu_checks.sh          # CPU dry run: smoke-size model, no GPU parts
#
# The device image has torch + transformers but maybe not pytest/hypothesis/peft: carry their
# wheels (pip download --no-deps pytest pluggy iniconfig hypothesis sortedcontainers attrs
# pytest-timeout peft accelerate into an ignored folder named in `carry`) and set WHEELS to it.
set -u
OUT=${OUT:-gpu-results}
DEVICE=${DEVICE:-cuda}
BUDGET=${BUDGET:-540}
PY=${PYTHON:-python}
mkdir -p "$OUT/runs"
export PYTHONPATH=src${WHEELS:+:$WHEELS}${PYTHONPATH:+:$PYTHONPATH}
for whl in ${WHEELS:+$WHEELS/*.whl}; do $PY -m pip install -q --no-deps "$whl" >/dev/null 2>&1; done
START=$(date +%s)
: > "$OUT/summary.txt"

# check NAME TIMEOUT_S CMD...: run CMD with its output in $OUT/NAME.log; record the outcome
check() {
  local name=$1 limit=$2
  shift 2
  local left=$((BUDGET - ($(date +%s) - START)))
  if [ "$left" -lt 20 ]; then
    printf '%-22s SKIPPED (budget spent)\n' "$name" | tee -a "$OUT/summary.txt"
    return 0
  fi
  [ "$limit" -gt "$left" ] && limit=$left
  local t0=$(date +%s)
  timeout "$limit" "$@" > "$OUT/$name.log" 2>&1
  local rc=$?
  local status=ok
  [ $rc -ne 0 ] && status="FAILED rc=$rc"
  [ $rc -eq 124 ] && status="TIMEOUT after ${limit}s"
  printf '%-22s %-22s %4ss\n' "$name" "$status" "$(($(date +%s) - t0))" | tee -a "$OUT/summary.txt"
}

if [ "$DEVICE" = cpu ]; then
  MODEL=(model.name=qwen3-random-smoke model.device=cpu generation.max_new_tokens=16
         trainer.prompts_per_step=2 trainer.threads=2)
else
  MODEL=()
  nvidia-smi > "$OUT/nvidia-smi.txt" 2>&1
fi
$PY -c "import torch, transformers; print(torch.__version__, transformers.__version__)" > "$OUT/versions.txt" 2>&1
TRAIN=(-m mgrpo train qwen3-0.6b-random "${MODEL[@]}")

if [ "$DEVICE" != cpu ]; then
  check pytest_gpu 150 $PY -m pytest -q -m gpu -p no:cacheprovider \
    tests/rollout/test_rollout_gpu.py tests/core/test_core_gpu.py tests/trainer/test_trainer_devices.py
fi
for preset in m-grpo srt ttrl intuitor grpo; do
  check "train_$preset" 90 $PY "${TRAIN[@]}" -o "$OUT/runs/$preset" algorithm.preset=$preset
done
check train_lora 90 $PY "${TRAIN[@]}" -o "$OUT/runs/lora" model.lora.r=16 model.lora.alpha=32
check train_fsdp1 120 $PY -m torch.distributed.run --standalone --nproc_per_node=1 \
  "${TRAIN[@]}" -o "$OUT/runs/fsdp1" distributed.fsdp=true
check train_stop_at_2 90 $PY "${TRAIN[@]}" -o "$OUT/runs/resume" trainer.stop_after=2
check train_resume 90 $PY "${TRAIN[@]}" -o "$OUT/runs/resume" --resume
# the resumed run against the straight m-grpo run (bit-exact on CPU; on a GPU, reported)
check resume_compare 30 $PY - "$OUT/runs/m-grpo" "$OUT/runs/resume" <<'EOF'
import json, sys
def rows(d):
    return [{k: v for k, v in json.loads(l).items() if not k.startswith("time/")}
            for l in open(f"{d}/metrics.jsonl")]
a, b = rows(sys.argv[1]), rows(sys.argv[2])
same = a == b
print("straight == stopped+resumed:", same)
for x, y in zip(a, b):
    print({k: (x[k], y.get(k)) for k in x if x[k] != y.get(k)} or "step identical")
sys.exit(0 if same else 1)
EOF
EVAL_DEV=cuda
[ "$DEVICE" = cpu ] && EVAL_DEV=cpu
check eval_export 90 $PY -m mgrpo eval "$OUT/runs/m-grpo/checkpoints/step-3" -b gsm8k --limit 16 \
  --max-new-tokens 64 --samples 2 --device $EVAL_DEV -o "$OUT/eval"
if [ "$DEVICE" != cpu ]; then
  check rollout_bench 150 $PY benchmarks/rollout.py --device cuda --fast-compile
  check gpu_scale_step 120 $PY benchmarks/gpu_scale_step.py --steps 2
  # measured peak per training stage next to benchmarks/memory_model.py's prediction
  check memory_measure 150 $PY benchmarks/memory_measure.py --model qwen3-0.6b --new-tokens 1024
fi

# the last step's metrics of every run, one line each
for run in "$OUT"/runs/*/; do
  name=$(basename "$run")
  last=$(tail -n 1 "$run/metrics.jsonl" 2>/dev/null)
  printf '%s: %s\n' "$name" "${last:-no metrics}" >> "$OUT/summary.txt"
done
echo "total $(($(date +%s) - START))s" | tee -a "$OUT/summary.txt"
cat "$OUT/summary.txt"
