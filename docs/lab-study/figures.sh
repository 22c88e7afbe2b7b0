#!/bin/sh
# The per-question tables and plots of docs/lab-study.md, from the runs of sweep.sh,
# demo-seeds.sh and long-seeds.sh (trains nothing). Each command writes DIR/summary.md,
# DIR/summary.json and DIR/plots/; --replay-alarm scores the collapse alarm with its present
# default thresholds.
set -e
R="mgrpo compare lab-collapse --seeds 0-4 -o docs/lab-study/runs --report-only --no-html --replay-alarm"
$R --presets srt,ttrl,m-grpo --report-to docs/lab-study/core
$R --presets m-grpo \
  --arm m-grpo-no-iqr=m-grpo:algorithm.iqr_k=null \
  --arm m-grpo-no-momentum=m-grpo:algorithm.momentum_rollouts=0 \
  --arm srt=srt \
  --report-to docs/lab-study/ablations
$R --presets m-grpo \
  --arm m-grpo-m0.9=m-grpo:algorithm.momentum=0.9 \
  --arm m-grpo-m0.999=m-grpo:algorithm.momentum=0.999 \
  --report-to docs/lab-study/momentum
$R --presets m-grpo \
  --arm m-grpo-N2=m-grpo:algorithm.momentum_rollouts=2 \
  --arm m-grpo-N8=m-grpo:algorithm.momentum_rollouts=8 \
  --report-to docs/lab-study/share
$R --presets srt \
  --arm srt-G8=srt:algorithm.rollouts=8 \
  --arm srt-G32=srt:algorithm.rollouts=32 \
  --report-to docs/lab-study/rollouts
mgrpo compare demo --presets srt,m-grpo --seeds 0-4 -o docs/lab-study/demo-seeds \
  --report-only --no-html --replay-alarm
mgrpo compare demo --presets srt,m-grpo --seeds 0-4 -o docs/lab-study/long \
  --report-only --no-html --replay-alarm
# the collapse alarm scored with today's default thresholds (replayed over every log)
docs/lab-study/sweep.sh --report-only --no-html --replay-alarm \
  --report-to docs/lab-study/alarm-replay
