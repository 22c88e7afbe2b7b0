#!/bin/sh
# The slow regime of docs/lab-study.md ("A slow regime"): recipe lab-long (the noise30-4op50
# lab world, trained on the lab train split, validated on the held-out val split at T = 0.8,
# lr 1.5e-5, 400 steps). Seed 0 chose the world and the learning rate (docs/lab-study/worlds/);
# the reported seeds start at 1. Resumable: finished runs are skipped. Extra arguments are
# passed on, e.g. `SEEDS=1-10 docs/lab-study/long-regime.sh` or `... --report-only --no-html`.
exec mgrpo compare lab-long --presets srt,grpo,m-grpo \
  --arm m-grpo-N8=m-grpo:algorithm.momentum_rollouts=8 \
  --seeds "${SEEDS:-1-3}" --jobs "${JOBS:-2}" -o docs/lab-study/long-regime \
  trainer.save_every=0 "$@"
