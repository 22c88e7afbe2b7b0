"""Building blocks of `mgrpo report`: run reading (`runs`), plots (`plots`), HTML (`html`).

The command itself and the summary logic live in :mod:`mgrpo.report`.
"""

from mgrpo.reporting.runs import (
    EvalResult,
    MetricsError,
    MetricsLog,
    RunData,
    load_run,
    load_runs,
    read_metrics,
)

__all__ = [
    "EvalResult",
    "MetricsError",
    "MetricsLog",
    "RunData",
    "load_run",
    "load_runs",
    "read_metrics",
]
