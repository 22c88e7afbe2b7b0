# Sourced by mechanism.sh and tables.sh: the mechanism study's arms, as `mgrpo compare` options.
FACTORIAL="--presets srt,grpo,m-grpo,co-rewarding-ii
  --arm m-grpo-noIQR=m-grpo:algorithm.iqr_k=null
  --arm m-grpo-silent=m-grpo:algorithm.policy_votes=false
  --arm m-grpo-silent-noIQR=m-grpo:algorithm.policy_votes=false,algorithm.iqr_k=null
  --arm m-grpo-IQRloss=m-grpo:algorithm.filter_scope=loss
  --arm m-grpo-N8=m-grpo:algorithm.momentum_rollouts=8
  --arm m-grpo-N8-silent=m-grpo:algorithm.momentum_rollouts=8,algorithm.policy_votes=false"
SCHEDULE="--arm srt-cos=srt:optim.schedule=cosine
  --arm m-grpo-cos=m-grpo:optim.schedule=cosine
  --arm co-rewarding-ii-cos=co-rewarding-ii:optim.schedule=cosine
  --arm co-rewarding-ii-authors=co-rewarding-ii:algorithm.kl_to_teacher=true,algorithm.kl_coef=0.001,algorithm.kl_estimator=low_var_kl,generation.temperature=1.0"
export FACTORIAL SCHEDULE
