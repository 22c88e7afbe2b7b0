#!/bin/sh
# The slow-regime study of docs/lab-study.md ("A slow regime"): recipe lab-long (the
# noise30-4op50 lab world, trained on the lab train split, validated on the held-out val split
# at T = 0.8, lr 1.5e-5, 400 steps). Seed 0 chose the world and the learning rate
# (results/lab-study/worlds/); the reported seeds start at 1.
#   core arms, CORE_SEEDS (default 1-10): srt, grpo (ground-truth control), m-grpo (paper
#     defaults, N = G/4), m-grpo-N8 (N = G/2, chosen before the runs), co-rewarding-ii (the
#     best arm on seeds 1-5, its seeds 6-10 run after that as a confirmation)
#   other arms, OTHER_SEEDS (default 1-5): ttrl, m-grpo-noIQR (iqr_k null), m-grpo-mvw3 (a
#     momentum vote counts 3 times), m-grpo-ties (ties go to the momentum side),
#     co-rewarding-ii-m99 (its teacher at the constant m = 0.99 instead of the cosine schedule),
#     co-rewarding-ii-N8 (8 teacher rollouts)
# Runs go to results/lab-study/long-regime/ (packed by pack-runs.py); tables.sh writes the
# per-group reports (docs/lab-study/long-regime/report-core/ and report-others/), the tables
# (stats.md; stats-ten-seeds.md, the ten-seed arms alone; confirm-seeds-6-10.md, those on
# co-rewarding-ii's confirmation seeds) and the alarm score (alarm.md).
# Resumable: finished runs are skipped, a half-done run resumes. Extra arguments go to every
# `mgrpo compare` call. Cost: about 4.3 hours for the 80 runs with --jobs 2 on the 2-vCPU dev
# machine (docs/lab-study.md, "A slow regime", Cost).
set -ef  # -f: no globbing, the arm lists hold brackets
cd "$(dirname "$0")/../.."
. docs/lab-study/long-regime-arms.sh
RUNS=results/lab-study/long-regime
# shellcheck disable=SC2086  # the arm lists are meant to split into words
mgrpo compare lab-long $CORE --seeds "${CORE_SEEDS:-1-10}" --jobs "${JOBS:-2}" -o "$RUNS" \
  --report-to docs/lab-study/long-regime/report-core --no-html trainer.save_every=0 "$@"
# shellcheck disable=SC2086
mgrpo compare lab-long $OTHERS --seeds "${OTHER_SEEDS:-1-5}" --jobs "${JOBS:-2}" -o "$RUNS" \
  --report-to docs/lab-study/long-regime/report-others --no-html trainer.save_every=0 "$@"
python docs/lab-study/pack-runs.py "$RUNS"
