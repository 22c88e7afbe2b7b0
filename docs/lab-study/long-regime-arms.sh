# Sourced by long-regime.sh and tables.sh (`. docs/lab-study/long-regime-arms.sh`): the slow
# regime's arms, as `mgrpo compare` options.
CORE="--presets srt,grpo,m-grpo,co-rewarding-ii
  --arm m-grpo-N8=m-grpo:algorithm.momentum_rollouts=8"
VARIANTS="--arm m-grpo-noIQR=m-grpo:algorithm.iqr_k=null
  --arm m-grpo-mvw3=m-grpo:algorithm.momentum_vote_weight=3
  --arm m-grpo-ties=m-grpo:algorithm.vote_ties=momentum-first
  --arm co-rewarding-ii-m99=co-rewarding-ii:algorithm.teacher_alpha=[0.01,0.01]
  --arm co-rewarding-ii-N8=co-rewarding-ii:algorithm.momentum_rollouts=8"
OTHERS="--presets ttrl $VARIANTS"
export CORE VARIANTS OTHERS
