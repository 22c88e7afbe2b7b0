"""Evaluation internals; the public entry point is `mgrpo.evaluate`."""

from mgrpo.evaluation.metrics import pass_at_k, summarize
from mgrpo.evaluation.runner import evaluate_benchmark, evaluate_records, overhead_report

__all__ = ["pass_at_k", "summarize", "evaluate_records", "evaluate_benchmark", "overhead_report"]
