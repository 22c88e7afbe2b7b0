#!/bin/sh
# The slow-regime study of docs/lab-study.md ("A slow regime"): recipe lab-long (the
# noise30-4op50 lab world, trained on the lab train split, validated on the held-out val split
# at T = 0.8, lr 1.5e-5, 400 steps). Seed 0 chose the world and the learning rate
# (docs/lab-study/worlds/); the reported seeds start at 1.
#   core arms, CORE_SEEDS (default 1-10): srt, grpo (ground-truth control), m-grpo (paper
#     defaults, N = G/4), m-grpo-N8 (N = G/2, chosen before the runs), co-rewarding-ii (the
#     best arm on seeds 1-5, its seeds 6-10 run after that as a confirmation)
#   other arms, OTHER_SEEDS (default 1-5): ttrl, m-grpo-noIQR (iqr_k null), m-grpo-mvw3 (a
#     momentum vote counts 3 times), m-grpo-ties (ties go to the momentum side),
#     co-rewarding-ii-m99 (its teacher at the constant m = 0.99 instead of the cosine schedule),
#     co-rewarding-ii-N8 (8 teacher rollouts, the rollouts per step of m-grpo-N8)
# Then the per-group reports (summary.md and plots/ under report-core/ and report-others/, the
# latter with srt and m-grpo on the same seeds), the tables (stats.md; stats-ten-seeds.md, the
# ten-seed arms alone; confirm-seeds-6-10.md, those on co-rewarding-ii's confirmation seeds)
# and the alarm score (alarm.md).
# Resumable: finished runs are skipped, a half-done run resumes. Extra arguments go to every
# `mgrpo compare` call. Cost: about 4.3 hours for the 80 runs with --jobs 2 on the 2-vCPU dev
# machine (docs/lab-study.md, "A slow regime", Cost).
set -ef  # -f: no globbing, the arm lists hold brackets
cd "$(dirname "$0")/../.."
. docs/lab-study/pin-kernels.sh  # x86 CPU kernels pinned to AVX2, as for the committed runs
OUT=docs/lab-study/long-regime
CORE="--presets srt,grpo,m-grpo,co-rewarding-ii
  --arm m-grpo-N8=m-grpo:algorithm.momentum_rollouts=8"
VARIANTS="--arm m-grpo-noIQR=m-grpo:algorithm.iqr_k=null
  --arm m-grpo-mvw3=m-grpo:algorithm.momentum_vote_weight=3
  --arm m-grpo-ties=m-grpo:algorithm.vote_ties=momentum-first
  --arm co-rewarding-ii-m99=co-rewarding-ii:algorithm.teacher_alpha=[0.01,0.01]
  --arm co-rewarding-ii-N8=co-rewarding-ii:algorithm.momentum_rollouts=8"
OTHERS="--presets ttrl $VARIANTS"
# shellcheck disable=SC2086  # the arm lists are meant to split into words
mgrpo compare lab-long $CORE --seeds "${CORE_SEEDS:-1-10}" --jobs "${JOBS:-2}" -o "$OUT" \
  --report-to "$OUT/report-core" --no-html trainer.save_every=0 "$@"
# shellcheck disable=SC2086
mgrpo compare lab-long $OTHERS --seeds "${OTHER_SEEDS:-1-5}" --jobs "${JOBS:-2}" -o "$OUT" \
  --report-to "$OUT/report-others" --no-html trainer.save_every=0 "$@"
# shellcheck disable=SC2086
mgrpo compare lab-long --presets srt,m-grpo,ttrl,co-rewarding-ii $VARIANTS \
  --seeds "${OTHER_SEEDS:-1-5}" -o "$OUT" --report-to "$OUT/report-others" --report-only --no-html \
  trainer.save_every=0 "$@" > /dev/null
PAIRS="--pair co-rewarding-ii:m-grpo-N8 --pair grpo:co-rewarding-ii"
ALL_PAIRS="$PAIRS --pair co-rewarding-ii-N8:m-grpo-N8"
# shellcheck disable=SC2086
python docs/lab-study/stats.py "$OUT" $ALL_PAIRS > "$OUT/stats.md"
# the ten-seed arms alone (their own Holm family), and on co-rewarding-ii's confirmation seeds
# (it was chosen as the best arm on seeds 1-5)
TEN="--arms srt,m-grpo,m-grpo-N8,co-rewarding-ii,grpo"
# shellcheck disable=SC2086
python docs/lab-study/stats.py "$OUT" $TEN $PAIRS > "$OUT/stats-ten-seeds.md"
# shellcheck disable=SC2086
python docs/lab-study/stats.py "$OUT" $TEN --seeds 6-10 $PAIRS > "$OUT/confirm-seeds-6-10.md"
python docs/lab-study/alarm-score.py "$OUT" --tune 1-5 --held-out 6-10 > "$OUT/alarm.md"
python docs/lab-study/embed.py long "$OUT/stats.md" --level 4
python docs/lab-study/embed.py alarm "$OUT/alarm.md"
