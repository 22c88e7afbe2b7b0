#!/usr/bin/env bash
# The GPU device check: in one call of about 7 minutes on one H100/H200 with no network, does
# training train, at what speed, in what memory. Each check is a module of
# benchmarks/gpu_checks/ (its docstring says what it asserts); each prints PASS/FAIL/SKIP per
# assertion, and a failing check does not stop the others:
#   deps            the dependency gate (~10 s): imports, versions, the GPU; stops the run
#                   with a message naming what is missing (carry it: benchmarks/gpu_carry.sh)
#   size            the tree + the carry against the device's limit (also a pre-flight here)
#   rollout         benchmarks/rollout.py --device cuda at a small size, alone on the GPU:
#                   fast_tok_per_s, hf_tok_per_s, the speed-up, fraction_of_floor
#   learning_paired lab model, seed 0: m-grpo and its optim.lr=0 control, side by side; the
#                   control must not move, m-grpo's reward rise must beat it by a margin
#                   from the committed CPU runs (gpu_checks/reference.json)
#   learning_truth  grpo (ground truth) and grpo under FSDP: validation accuracy must rise
#                   by a margin from the committed CPU runs
#   graphs          graphed == eager decode, fp32 rotary tables, rollout-vs-training log-prob
#                   gap, captures per training step, the workspace through validation
#   update          one scripted update vs CPU fp32: mixed / FSDP / LoRA (SKIP without peft)
#   resume          stop + resume: exact restore, metrics within a tolerance
#   paper_step      one paper-shaped step of the 0.6B random model: measured vs modelled
#                   memory per stage (validation included), stage times, decode chunking
# Any "CUDA graph capture failed" (the engine's eager fallback) is a FAIL.
#
# Time: BUDGET (420 s) for all of it; a check is cut at its own limit or at what is left
# (keeping the assertions it made: TIMEOUT), and one that cannot start is SKIP. On CPU the
# limits are 3x and the budget 900 s: smoke sizes are small, a shared CPU is slow. At most two `mgrpo train` processes run at once: the
# learning checks (two arms each, one after the other) run beside graphs and update, then
# resume beside paper_step.
# Outputs under $OUT (2 files): summary.json, rewritten after every check (and when one
# starts), so a killed run still returns what finished; logs.tar.gz, every check's log and
# the learning runs' metrics, rewritten likewise. Scratch goes to a temporary directory.
#
#   bash benchmarks/gpu_carry.sh                  # here, once: builds .gpu-carry/ to carry
#   bash benchmarks/gpu_checks.sh                 # on the GPU machine ($OUT set; carry .gpu-carry)
#   DEVICE=cpu bash benchmarks/gpu_checks.sh      # every check at smoke size on CPU
#
# Carried: .gpu-carry/wheels/*.whl are installed (pip --no-index --target, into the scratch
# directory, then on PYTHONPATH) when a required package is missing; .gpu-carry/mgrpo is the
# lab cache (MGRPO_CACHE_DIR unless set). Without it the lab model is built on first use, and
# the learning checks fail their "same lab model" assertion.
set -u
cd "$(dirname "$0")/.."
OUT=${OUT:-gpu-results}
DEVICE=${DEVICE:-cuda}
# the limits are a GPU's; at smoke size on a (shared) CPU each check gets 3x, the run 900 s
SCALE=1 DEFAULT_BUDGET=420
if [ "$DEVICE" = cpu ]; then SCALE=3 DEFAULT_BUDGET=900; fi
BUDGET=${BUDGET:-$DEFAULT_BUDGET}
PY=${PYTHON:-python3}
CARRY_DIR=${CARRY_DIR:-.gpu-carry}
mkdir -p "$OUT"
OUT=$(cd "$OUT" && pwd)
SCRATCH=$(mktemp -d)
trap 'rm -rf "$SCRATCH"' EXIT
export DEVICE SCRATCH OUT CHECK_RESULTS="$SCRATCH/results" PYTHONUNBUFFERED=1
export PYTHONPATH=src:benchmarks${PYTHONPATH:+:$PYTHONPATH}
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-2} TOKENIZERS_PARALLELISM=false
if [ -z "${MGRPO_CACHE_DIR:-}" ] && [ -d "$CARRY_DIR/mgrpo/lab" ]; then
  export MGRPO_CACHE_DIR="$PWD/$CARRY_DIR/mgrpo"
fi
START=$(date +%s)
STATUS="$SCRATCH/status"
mkdir -p "$SCRATCH/logs" "$CHECK_RESULTS"
: > "$STATUS"

# summary.json and logs.tar.gz from what is there now (each replaced atomically)
summarize() {
  $PY -m gpu_checks.summary "$STATUS" "$CHECK_RESULTS" "$OUT/summary.json" "$BUDGET" --quiet
  tar -czf "$SCRATCH/logs-$BASHPID.tgz" -C "$SCRATCH" logs 2>/dev/null \
    && mv -f "$SCRATCH/logs-$BASHPID.tgz" "$OUT/logs.tar.gz"
}

# check NAME LIMIT_S MODULE [ARGS...]: python -m gpu_checks.MODULE ARGS > logs/NAME.log
check() {
  local name=$1 limit=$(($2 * SCALE)) module=$3
  shift 3
  local left=$((BUDGET - ($(date +%s) - START)))
  if [ "$left" -lt 15 ]; then
    echo "$name skipped 0" >> "$STATUS"
    summarize
    echo "SKIP $name (the time budget is spent)"
    return 0
  fi
  [ "$limit" -gt "$left" ] && limit=$left
  echo "$name running 0" >> "$STATUS"
  summarize
  local t0
  t0=$(date +%s)
  LEARNING_TIMEOUT_S=$((limit - 15)) timeout -k 5 "$limit" $PY -m "gpu_checks.$module" "$@" \
    > "$SCRATCH/logs/$name.log" 2>&1
  local rc=$?
  echo "$name $rc $(($(date +%s) - t0))" >> "$STATUS"
  summarize
  echo "$name: exit $rc after $(($(date +%s) - t0)) s"
  return "$rc"
}

# the dependency gate: install the carried wheels if a required package is missing, then
# import everything; stop here if that fails
missing=$($PY -m gpu_checks.deps --missing 2>/dev/null)
if [ -n "$missing" ] && ls "$CARRY_DIR"/wheels/*.whl > /dev/null 2>&1; then
  echo "installing the carried wheels for: $missing"
  $PY -m pip install -q --no-index --no-deps --no-compile --no-cache-dir \
    --target "$SCRATCH/site" "$CARRY_DIR"/wheels/*.whl > "$SCRATCH/logs/wheels.log" 2>&1 \
    || echo "pip install of $CARRY_DIR/wheels failed (logs/wheels.log)"
  export PYTHONPATH="$PYTHONPATH:$SCRATCH/site"
fi
if ! check deps 30 deps; then
  summarize
  echo "STOPPED: the dependency gate failed:"
  grep -E "^(FAIL|MISSING)" "$SCRATCH/logs/deps.log" || tail -20 "$SCRATCH/logs/deps.log"
  exit 3
fi
check size 15 size
# the lab model, built only when no cache (carried or local) has it
LAB=""
if ! $PY -c "from mgrpo.lab import lab_info; raise SystemExit(lab_info() is None)" 2>/dev/null; then
  $PY -m mgrpo lab build > "$SCRATCH/logs/lab-build.log" 2>&1 &
  LAB=$!
fi
check rollout 90 rollout_speed
(
  while [ -n "$LAB" ] && kill -0 "$LAB" 2> /dev/null; do sleep 2; done
  check learning_paired 150 learning paired
  check learning_truth 150 learning truth
) &
LEARNING=$!
check graphs 90 graphs
check update 120 update
wait "$LEARNING"
check resume 120 resume &
check paper_step 120 paper_step
wait
summarize
$PY -m gpu_checks.summary "$STATUS" "$CHECK_RESULTS" "$OUT/summary.json" "$BUDGET"
echo "total $(($(date +%s) - START)) s of a $BUDGET s budget; results: $OUT/summary.json, $OUT/logs.tar.gz"
