"""Training: the step, the loop and what a run is made of.

- :mod:`~mgrpo.train.step`: one M-GRPO step (generate, entropy, IQR filter, answers, vote,
  rewards, advantages, updates, EMA), docs/design.md §2-3;
- :mod:`~mgrpo.train.trainer`: the loop (validation cadence, checkpoints, resume, signals);
- :mod:`~mgrpo.train.setup`: a run's set-up (run directory, data, models, optimizer,
  schedule, engines) in one path; :mod:`~mgrpo.train.layouts`: the model layouts (full
  weights, mixed precision, LoRA, FSDP) behind one interface;
- :mod:`~mgrpo.train.metrics_writer`: `metrics.jsonl` and TensorBoard;
- :mod:`~mgrpo.train.presets`: the algorithm presets (m-grpo, srt, ttrl, intuitor, grpo);
- :mod:`~mgrpo.train.rewards`: the reward registry and the built-in rewards;
- :mod:`~mgrpo.train.types`: the records between the step's stages;
- :mod:`~mgrpo.train.momentum` / :mod:`~mgrpo.train.lora`: the momentum model variants
  and LoRA adapters;
- :mod:`~mgrpo.train.prompts`: the training prompt set (step s's batch is a function of
  the seed and s);
- :mod:`~mgrpo.train.resume`: what a checkpoint holds, saving and restoring it, the resume
  checks; :mod:`~mgrpo.train.checkpoint`: the atomic, checksummed directory format;
- :mod:`~mgrpo.train.validation`,
  :mod:`~mgrpo.train.alarm` (label-free collapse alarm), :mod:`~mgrpo.train.trackers`
  (W&B / MLflow), :mod:`~mgrpo.train.faults` (fault injection for the reliability tests).
"""
