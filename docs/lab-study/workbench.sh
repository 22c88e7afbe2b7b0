#!/bin/sh
# evol-rl and restrain on recipe lab-long, seeds 11-15, beside the mechanism study's srt,
# co-rewarding-ii and grpo on the same seeds (docs/lab-study.md, "Two 2025 methods in the slow
# regime"). Runs go to results/lab-study/workbench/ (packed); tables.sh writes the table.
# Resumable, one seed at a time so that a half-done run stays paired.
set -e
cd "$(dirname "$0")/../.."
for seed in 11 12 13 14 15; do
  mgrpo compare lab-long --presets evol-rl,restrain --seeds "$seed" --jobs "${JOBS:-2}" \
    -o results/lab-study/workbench --no-html trainer.save_every=0 "$@"
done
python docs/lab-study/pack-runs.py results/lab-study/workbench
