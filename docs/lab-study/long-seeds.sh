#!/bin/sh
# The demo's learning rate (1e-4) over 150 steps instead of 60, srt vs m-grpo, five seeds:
# the horizon on which the paper's collapse signals (reward and vote share up, entropy down)
# appear in the lab world at this lr. Runs to results/lab-study/long/ (packed).
set -e
cd "$(dirname "$0")/../.."
mgrpo compare demo --presets srt,m-grpo --seeds 0-4 --jobs 2 -o results/lab-study/long \
  --report-to docs/lab-study/long trainer.max_steps=150 trainer.eval_every=10 "$@"
python docs/lab-study/pack-runs.py results/lab-study/long
