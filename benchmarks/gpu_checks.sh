#!/usr/bin/env bash
# The GPU check that proves training trains, in one go (<= 9 min on one H100/H200, nothing
# from the hub). Each check is a module of benchmarks/gpu_checks/ (its docstring says what it
# asserts); each prints PASS/FAIL per assertion, and a failing check does not stop the rest:
#   graphs         Qwen3-shaped random model, random norms: graphed == eager greedy decode
#                  (one call, a budget-forced split, three kept-workspace calls); fp32
#                  inv_freq on every copy; rollout-vs-training log-prob gap by position
#   update         one update of scripted rollouts, fixed advantages: gradient cosine vs CPU
#                  fp32 for GPU mixed / FSDP (1 process) / LoRA; bf16 copy == master cast;
#                  momentum == 0.99 theta0 + 0.01 theta1
#   learning       mgrpo train lab-collapse seed 0, srt and m-grpo N=8, vs the committed CPU
#                  reference curves (docs/lab-study/runs/srt-s0, m-grpo-N8-s0)
#   learning_fsdp  the same under torchrun + FSDP, one process
#   resume         stop + resume: exact restore, metrics within a tolerance
#   paper_step     one paper-shaped step of the 0.6B random model: measured vs modelled
#                  memory per stage, stage times, decode chunking
# Outputs under $OUT: summary.json and one log per check (6 logs); run directories and
# checkpoints go to a scratch directory deleted at exit. Budget: BUDGET seconds (540); a
# check is cut at its own limit or what is left, and one that cannot start gets SKIPPED.
#
#   bash benchmarks/gpu_checks.sh                 # on the GPU machine
#   DEVICE=cpu bash benchmarks/gpu_checks.sh      # every check at smoke size on CPU
#
# The lab model is built on first use (`mgrpo lab build`, ~2 min on CPU); to skip that,
# carry a built cache and point MGRPO_CACHE_DIR at it.
set -u
OUT=${OUT:-gpu-results}
DEVICE=${DEVICE:-cuda}
BUDGET=${BUDGET:-540}
PY=${PYTHON:-python}
mkdir -p "$OUT"
SCRATCH=$(mktemp -d)
trap 'rm -rf "$SCRATCH"' EXIT
export DEVICE SCRATCH CHECK_RESULTS="$SCRATCH/results"
export PYTHONPATH=src:benchmarks${PYTHONPATH:+:$PYTHONPATH}
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-2} TOKENIZERS_PARALLELISM=false
START=$(date +%s)
STATUS="$SCRATCH/status"
: > "$STATUS"

# check NAME LIMIT_S ARGS...: python -m gpu_checks.NAME ARGS > $OUT/NAME.log; status line
check() {
  local name=$1 limit=$2 module=$3
  shift 3
  local left=$((BUDGET - ($(date +%s) - START)))
  if [ "$left" -lt 20 ]; then
    echo "$name skipped 0" >> "$STATUS"
    echo "SKIPPED $name (budget spent)"
    return 0
  fi
  [ "$limit" -gt "$left" ] && limit=$left
  local t0=$(date +%s)
  LEARNING_TIMEOUT_S=$((limit - 15)) timeout "$limit" $PY -m "gpu_checks.$module" "$@" \
    > "$OUT/$name.log" 2>&1
  local rc=$?
  echo "$name $rc $(($(date +%s) - t0))" >> "$STATUS"
  echo "$name: exit $rc after $(($(date +%s) - t0)) s (log: $OUT/$name.log)"
}

# the lab model, built (or verified in its cache) while the first two checks run
$PY -m mgrpo lab build > "$SCRATCH/lab-build.log" 2>&1 &
LAB=$!
check graphs 90 graphs
check update 120 update
wait "$LAB" || { echo "mgrpo lab build failed:"; tail -20 "$SCRATCH/lab-build.log"; }
# the lab-model checks share the GPU (a small model): run at once
check learning 240 learning &
check learning_fsdp 240 learning --fsdp &
check resume 240 resume &
wait
check paper_step 120 paper_step

$PY -m gpu_checks.summary "$STATUS" "$CHECK_RESULTS" "$OUT/summary.json"
echo "total $(($(date +%s) - START)) s"
