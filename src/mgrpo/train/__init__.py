"""Training: one step, and the run around it (docs/design.md §1-2).

- :mod:`~mgrpo.train.step`: one M-GRPO step (generate, entropy, IQR filter, answers, vote,
  rewards, advantages, updates, EMA), with its records (:mod:`~mgrpo.train.types`), its
  updates (:mod:`~mgrpo.train.step_updates`) and shaping (:mod:`~mgrpo.train.step_shaping`);
- :mod:`~mgrpo.train.algorithm`: the method's config -> the spec the step reads (the
  methods themselves: :mod:`mgrpo.methods`); :mod:`~mgrpo.train.rewards`: reward names to
  functions, user rewards, mixing;
- :mod:`~mgrpo.train.run`: the run's life (set-up, the loop, the run directory, checkpoints
  and resume, the prompt set, validation);
- :mod:`~mgrpo.train.layout`: the models in a run (full weights, mixed precision, LoRA,
  FSDP; the momentum model; precision; the memory pre-flight);
- :mod:`~mgrpo.train.logs`: what a run logs (metrics, samples, trackers, the collapse alarm).

Importing this package imports nothing: `mgrpo report` reads the run directory's names from
:mod:`~mgrpo.train.run.run_dir` without torch.
"""
