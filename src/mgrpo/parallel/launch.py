"""`mgrpo train --nproc N ...`: a thin single-machine launcher over `torch.distributed.run`.

It re-runs the same command line under torchrun (``--standalone --nproc_per_node N``) with
``--nproc`` removed, i.e. exactly what a user would type by hand:

    torchrun --standalone --nproc_per_node N -m mgrpo train RECIPE -o OUT key=value ...

Multi-node jobs call torchrun themselves (notes in the README's "Scaling out" section).
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Sequence

NPROC_FLAG = "--nproc"


def strip_nproc(argv: Sequence[str]) -> list[str]:
    """argv without `--nproc N` / `--nproc=N`."""
    out, skip = [], False
    for arg in argv:
        if skip:
            skip = False
            continue
        if arg == NPROC_FLAG:
            skip = True
            continue
        if arg.startswith(NPROC_FLAG + "="):
            continue
        out.append(arg)
    return out


def torchrun_command(nproc: int, train_argv: Sequence[str]) -> list[str]:
    """The torchrun command line for `mgrpo train` arguments `train_argv` (no --nproc)."""
    if nproc < 1:
        raise ValueError(f"--nproc must be >= 1, got {nproc}")
    return [sys.executable, "-m", "torch.distributed.run", "--standalone",
            f"--nproc_per_node={nproc}", "-m", "mgrpo", "train", *train_argv]


def launch(nproc: int, train_argv: Sequence[str]) -> int:
    """Run `mgrpo train` under torchrun with `nproc` local processes; its exit status."""
    if os.environ.get("WORLD_SIZE"):
        raise ValueError("--nproc given inside a torchrun job; drop --nproc (torchrun already launched)")
    cmd = torchrun_command(nproc, strip_nproc(train_argv))
    print("mgrpo: launching " + " ".join(cmd[1:]), file=sys.stderr, flush=True)
    return subprocess.call(cmd)
