"""The x86 CPU kernel path of a process, and pinning it for the lab world (stdlib only).

PyTorch picks its CPU kernels (ATen's dispatch: AVX2 or AVX512) and MKL its code path when
they first run, from the CPU and three environment variables, `KERNEL_ENV`. Float results
depend on that path, and so do the lab world's weights (a model trained from scratch by SFT)
and every run on it. With `PINNED_AVX2` set, an AVX512 machine takes an AVX2 machine's path
bit for bit (docs/lab-study.md, "Two builds of the same world").

`mgrpo train` on a `lab:` model (`model.lab_kernels: avx2`, the default), `mgrpo lab` and
`mgrpo eval` of a lab model pin the path without the user setting anything. The variables
must be in the environment before torch runs its first kernel: a command that has not
imported torch yet sets them in place; one that has re-executes itself once with them set
(`pin_lab_kernels`). Edge cases:

- the user set any of `KERNEL_ENV`: the user chose a path; nothing is changed or added;
- not x86 (`platform.machine()`): the variables mean nothing there; nothing is done;
- `native`: nothing is done (the CPU's own path; runs are not bit-comparable across CPUs).
"""

from __future__ import annotations

import os
import platform
import sys
from collections.abc import Mapping, Sequence

__all__ = ["KERNEL_ENV", "LAB_KERNEL_MODES", "PINNED_AVX2", "is_lab_model_name",
           "pin_lab_kernels", "pinned_environ", "user_chose_kernels"]

KERNEL_ENV = ("ATEN_CPU_CAPABILITY", "MKL_CBWR", "MKL_ENABLE_INSTRUCTIONS")
PINNED_AVX2 = {"ATEN_CPU_CAPABILITY": "avx2", "MKL_CBWR": "AVX2", "MKL_ENABLE_INSTRUCTIONS": "AVX2"}
LAB_KERNEL_MODES = ("avx2", "native")  # model.lab_kernels / --lab-kernels
X86_MACHINES = ("x86_64", "amd64", "i386", "i686")


def is_lab_model_name(name: str) -> bool:
    """True for the lab world's model names, `lab` and `lab:NAME` (`models.loading`)."""
    return name == "lab" or name.startswith("lab:")


def user_chose_kernels(environ: Mapping[str, str]) -> bool:
    """True when any of `KERNEL_ENV` is set: the user picked the kernel path."""
    return any(key in environ for key in KERNEL_ENV)


def pinned_environ(environ: Mapping[str, str], mode: str = "avx2") -> dict[str, str] | None:
    """`environ` plus the `mode` pins, or None when nothing is to change (module docstring's
    edge cases: `native`, not x86, or a path the user chose)."""
    if mode not in LAB_KERNEL_MODES:
        raise ValueError(f"unknown lab kernel mode {mode!r}; valid: {', '.join(LAB_KERNEL_MODES)}")
    if (mode == "native" or platform.machine().lower() not in X86_MACHINES
            or user_chose_kernels(environ)):
        return None
    return {**environ, **PINNED_AVX2}


def pin_lab_kernels(mode: str, command: Sequence[str] | None) -> None:
    """Put this process on the `mode` kernel path before it runs a lab model.

    torch not imported yet: set the variables in `os.environ` and return. Already imported
    (its kernel path may be fixed): with `command` (the `mgrpo` argv after the program name),
    replace this process by `python -m mgrpo *command` with the variables set (never
    returns); without one (an in-process call, e.g. a test calling `cli.main`), return
    unchanged, and the lab cache's build note says which path the process took."""
    env = pinned_environ(os.environ, mode)
    if env is None:
        return
    print("mgrpo: lab model: x86 CPU kernels pinned to AVX2 ("
          + " ".join(f"{k}={v}" for k, v in PINNED_AVX2.items())
          + "; model.lab_kernels=native or --lab-kernels native takes this CPU's own path)",
          file=sys.stderr)
    if "torch" not in sys.modules:
        os.environ.update(PINNED_AVX2)
        return
    if command is None:
        return
    sys.stdout.flush()
    sys.stderr.flush()
    os.execve(sys.executable, [sys.executable, "-m", "mgrpo", *command], env)
