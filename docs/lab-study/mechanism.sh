#!/bin/sh
# The mechanism study of docs/lab-study.md ("Why the momentum anchor fails"), on recipe
# lab-long, seeds 11-20 (fixed before the runs: docs/lab-study/mechanism/plan.md):
#   the factorial (M = 12 trained policy rollouts, N = 4 momentum rollouts, m = 0.99):
#     who votes (policy_votes) x the IQR filter (off | vote+loss), the filter on the loss
#     alone, and who votes at M = N = 8; srt, grpo and co-rewarding-ii on the same seeds;
#   the paper's schedule: srt, m-grpo and co-rewarding-ii with optim.schedule=cosine;
#   co-rewarding-ii as tmlr-group/Co-rewarding runs it (KL 0.001 to the EMA teacher with
#     verl's low_var_kl, rollouts at T = 1.0).
# Runs go to results/lab-study/mechanism/ (packed); tables.sh writes the tables. Seed blocks
# (11-15, then 16-20) keep a half-done study balanced across arms. Resumable.
set -ef  # -f: no globbing
cd "$(dirname "$0")/../.."
. docs/lab-study/mechanism-arms.sh
RUNS=results/lab-study/mechanism
for seeds in 11-15 16-20; do
  # shellcheck disable=SC2086  # the arm lists are meant to split into words
  mgrpo compare lab-long $FACTORIAL --seeds $seeds --jobs "${JOBS:-2}" -o $RUNS --no-html \
    --report-to "${TMPDIR:-/tmp}/mgrpo-mechanism-report" trainer.save_every=0 "$@"
done
for seeds in 11-15 16-20; do
  # shellcheck disable=SC2086
  mgrpo compare lab-long $SCHEDULE --seeds $seeds --jobs "${JOBS:-2}" -o $RUNS --no-html \
    --report-to "${TMPDIR:-/tmp}/mgrpo-mechanism-report" trainer.save_every=0 "$@"
done
python docs/lab-study/pack-runs.py $RUNS
