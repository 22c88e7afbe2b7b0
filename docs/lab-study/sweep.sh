#!/bin/sh
# The lab-world collapse study (docs/lab-study.md): 11 arms x 5 seeds, two jobs side by side,
# on the shipped recipe lab-collapse (= demo with optim.lr=2e-4 trainer.max_steps=40
# trainer.eval_every=5 trainer.save_every=10). Runs go to results/lab-study/runs/ (stored
# packed by pack-runs.py), the tables to docs/lab-study/runs/ (tables.sh regenerates them).
# Re-running it finishes a half-done sweep: finished runs are skipped, interrupted ones
# resume from their last checkpoint. Extra arguments are passed on to `mgrpo compare`.
set -e
cd "$(dirname "$0")/../.."
mgrpo compare lab-collapse \
  --presets srt,m-grpo,ttrl \
  --arm m-grpo-no-iqr=m-grpo:algorithm.iqr_k=null \
  --arm m-grpo-no-momentum=m-grpo:algorithm.momentum_rollouts=0 \
  --arm srt-G8=srt:algorithm.rollouts=8 \
  --arm srt-G32=srt:algorithm.rollouts=32 \
  --arm m-grpo-N8=m-grpo:algorithm.momentum_rollouts=8 \
  --arm m-grpo-m0.999=m-grpo:algorithm.momentum=0.999 \
  --arm m-grpo-m0.9=m-grpo:algorithm.momentum=0.9 \
  --arm m-grpo-N2=m-grpo:algorithm.momentum_rollouts=2 \
  --seeds 0-4 --jobs 2 -o results/lab-study/runs --report-to docs/lab-study/runs "$@"
python docs/lab-study/pack-runs.py results/lab-study/runs
