"""Running one training job on several processes.

- :mod:`~mgrpo.parallel.distributed`: process groups, the prompt split, collectives with a
  watchdog (docs/scaling.md);
- :mod:`~mgrpo.parallel.fsdp`: FSDP2 sharding of the policy and the reference, the
  generator-copy refresh;
- :mod:`~mgrpo.parallel.sharded_checkpoint`: the DCP shards of a sharded checkpoint;
- :mod:`~mgrpo.parallel.launch`: ``mgrpo train --nproc N`` re-runs itself under torchrun.
"""
