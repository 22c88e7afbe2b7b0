#!/bin/sh
# The fast regime's demo contrast on ten seeds: srt, m-grpo (paper defaults) and m-grpo-N8 on
# seeds 5-9, beside the seeds 0-4 of sweep.sh (same recipe lab-collapse, same directory), then
# their tables over seeds 0-9 (ten-seeds/stats.md) and curves (ten-seeds/plots/).
# Resumable; about 15 minutes on the 2-vCPU dev machine.
set -e
cd "$(dirname "$0")/../.."
ARMS="--presets srt,m-grpo --arm m-grpo-N8=m-grpo:algorithm.momentum_rollouts=8"
# shellcheck disable=SC2086  # the arm list is meant to split into words
mgrpo compare lab-collapse $ARMS --seeds 5-9 --jobs "${JOBS:-2}" -o docs/lab-study/runs \
  --report-to docs/lab-study/ten-seeds --no-html trainer.save_every=0 "$@"
# shellcheck disable=SC2086
mgrpo compare lab-collapse $ARMS --seeds 0-9 -o docs/lab-study/runs --report-only --no-html \
  --replay-alarm --report-to docs/lab-study/ten-seeds > /dev/null
python docs/lab-study/stats.py docs/lab-study/runs --arms srt,m-grpo,m-grpo-N8 \
  > docs/lab-study/ten-seeds/stats.md
python docs/lab-study/embed.py ten docs/lab-study/ten-seeds/stats.md
