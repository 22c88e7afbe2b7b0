"""Sandboxed execution of model-written code and the code benchmarks' graders.

- :func:`run_program`: run untrusted Python in an isolated child process (layers and
  what is / is not isolated: :mod:`mgrpo.eval.sandbox.runner`).
- :func:`extract_code`: the program inside a model response.
- :func:`grade_mbpp_plus`: MBPP+ with EvalPlus semantics (:mod:`mgrpo.eval.sandbox.mbpp`).
- :func:`grade_livecodebench`: LiveCodeBench stdin and functional tests
  (:mod:`mgrpo.eval.sandbox.livecodebench`, row format documented there).
"""

from mgrpo.eval.sandbox.common import CodeVerdict, extract_code
from mgrpo.eval.sandbox.livecodebench import grade_livecodebench, load_test_cases
from mgrpo.eval.sandbox.mbpp import check_output, grade_mbpp_plus, load_mbpp_plus
from mgrpo.eval.sandbox.runner import (
    STATUSES,
    RunResult,
    SandboxError,
    isolation_layers,
    run_program,
)

__all__ = [
    "STATUSES",
    "CodeVerdict",
    "RunResult",
    "SandboxError",
    "check_output",
    "extract_code",
    "grade_livecodebench",
    "grade_mbpp_plus",
    "isolation_layers",
    "load_mbpp_plus",
    "load_test_cases",
    "run_program",
]
