#!/bin/sh
# The shipped demo (recipe demo: lr 1e-4, 60 steps) under five seeds, srt vs m-grpo,
# validated every 10 steps instead of 30 (validation uses its own seed stream). Runs to
# results/lab-study/demo-seeds/ (packed).
set -e
cd "$(dirname "$0")/../.."
mgrpo compare demo --presets srt,m-grpo --seeds 0-4 --jobs 2 -o results/lab-study/demo-seeds \
  --report-to docs/lab-study/demo-seeds trainer.eval_every=10 "$@"
python docs/lab-study/pack-runs.py results/lab-study/demo-seeds
