#!/bin/sh
# The fast regime's demo contrast on ten seeds: srt, m-grpo (paper defaults) and m-grpo-N8 on
# seeds 0-9 of recipe lab-collapse (one lab build for all thirty runs, see docs/lab-study.md,
# "Two builds of the same world"). Runs go to results/lab-study/ten-seeds-runs/ (packed);
# tables.sh writes their tables (docs/lab-study/ten-seeds/stats.md, embedded in
# docs/lab-study.md) and curves (ten-seeds/plots/). Resumable; about 30 run-minutes on the
# 2-vCPU dev machine.
set -e
cd "$(dirname "$0")/../.."
ARMS="--presets srt,m-grpo --arm m-grpo-N8=m-grpo:algorithm.momentum_rollouts=8"
# shellcheck disable=SC2086  # the arm list is meant to split into words
mgrpo compare lab-collapse $ARMS --seeds 0-9 --jobs "${JOBS:-2}" \
  -o results/lab-study/ten-seeds-runs --report-to docs/lab-study/ten-seeds --no-html \
  --replay-alarm trainer.save_every=0 "$@"
python docs/lab-study/pack-runs.py results/lab-study/ten-seeds-runs
