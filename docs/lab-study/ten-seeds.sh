#!/bin/sh
# The fast regime's demo contrast on ten seeds: srt, m-grpo (paper defaults) and m-grpo-N8 on
# seeds 0-9 of recipe lab-collapse, in their own directory (ten-seeds-runs/: one lab build for
# all thirty runs, see docs/lab-study.md, "Two builds of the same world"), then their tables
# (ten-seeds/stats.md, embedded in docs/lab-study.md) and curves (ten-seeds/plots/).
# Resumable; about 30 run-minutes on the 2-vCPU dev machine.
set -e
cd "$(dirname "$0")/../.."
. docs/lab-study/pin-kernels.sh  # x86 CPU kernels pinned to AVX2, as for the committed runs
ARMS="--presets srt,m-grpo --arm m-grpo-N8=m-grpo:algorithm.momentum_rollouts=8"
RUNS=docs/lab-study/ten-seeds-runs
# shellcheck disable=SC2086  # the arm list is meant to split into words
mgrpo compare lab-collapse $ARMS --seeds 0-9 --jobs "${JOBS:-2}" -o "$RUNS" \
  --report-to docs/lab-study/ten-seeds --no-html --replay-alarm trainer.save_every=0 "$@"
python docs/lab-study/stats.py "$RUNS" > docs/lab-study/ten-seeds/stats.md
python docs/lab-study/embed.py ten docs/lab-study/ten-seeds/stats.md
python docs/lab-study/alarm-score.py docs/lab-study/ten-seeds-runs --tune 0-4 --held-out 5-9 \
  > docs/lab-study/ten-seeds/alarm.md
python docs/lab-study/embed.py ten-alarm docs/lab-study/ten-seeds/alarm.md
