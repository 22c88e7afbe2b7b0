"""Reports of finished or running runs: read, summarise, plot, compare.

- :mod:`~mgrpo.report.runs`: a run directory's files (metrics.jsonl, config.yaml, eval
  results) read into :class:`RunData`;
- :mod:`~mgrpo.report.build`: summary tables and :func:`~mgrpo.report.build.build_report`
  (PNG plots from :mod:`~mgrpo.report.plots`, HTML from :mod:`~mgrpo.report.html`, markdown);
- :mod:`~mgrpo.report.compare`: a recipe swept over presets x G x seeds and its scaling table.
"""

from mgrpo.report.runs import (
    EvalResult,
    MetricsError,
    RunData,
    RunMetrics,
    load_run,
    load_runs,
    read_metrics,
)

__all__ = [
    "EvalResult",
    "MetricsError",
    "RunMetrics",
    "RunData",
    "load_run",
    "load_runs",
    "read_metrics",
]
