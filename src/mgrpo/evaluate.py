"""The public evaluation names, importable as ``mgrpo.evaluate.<name>``.

``pass_at_k`` and the others below are defined in :mod:`mgrpo.eval` (the harness); the
``mgrpo eval`` command is :mod:`mgrpo.cli.eval`.
"""

from mgrpo.eval import (
    evaluate_benchmark,
    evaluate_records,
    overhead_report,
    pass_at_k,
    summarize,
)

__all__ = ["evaluate_benchmark", "evaluate_records", "overhead_report", "pass_at_k", "summarize"]
