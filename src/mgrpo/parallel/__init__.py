"""Running one training job on several processes.

- :mod:`~mgrpo.parallel.distributed`: process groups, collectives with a watchdog, FSDP2
  sharding of the policy, sharded checkpoints (docs/scaling.md);
- :mod:`~mgrpo.parallel.launch`: ``mgrpo train --nproc N`` re-runs itself under torchrun.
"""
