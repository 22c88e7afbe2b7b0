"""Evaluation: benchmark accuracy (avg@k, pass@k, maj@k) and the code sandbox.

- :func:`evaluate_records` / :func:`evaluate_benchmark` (:mod:`~mgrpo.eval.runner`): the
  harness shared by ``mgrpo eval`` and the trainer's validation;
- :func:`pass_at_k`, :func:`summarize` (:mod:`~mgrpo.eval.metrics`);
- :mod:`~mgrpo.eval.sandbox`: isolated execution of model-written code and the MBPP+ /
  LiveCodeBench graders.

The command line is :mod:`mgrpo.cli.eval`; protocol and outputs: docs/evaluation.md.
"""

from mgrpo.eval.metrics import pass_at_k, summarize
from mgrpo.eval.runner import evaluate_benchmark, evaluate_records, overhead_report

__all__ = ["pass_at_k", "summarize", "evaluate_records", "evaluate_benchmark", "overhead_report"]
