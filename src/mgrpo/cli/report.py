"""`mgrpo report`: its command line (argparse); the work is done by :mod:`mgrpo.report.build`."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from mgrpo.report.build import build_report
from mgrpo.report.plots import DEFAULT_MAX_POINTS, DEFAULT_SMOOTHING, PLOT_NAMES


def configure_parser(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("run_dirs", nargs="+", metavar="RUN_DIR", help="run directories")
    parser.add_argument(
        "-o",
        "--output",
        default=None,
        help="output directory (default: RUN_DIR/report for one run, ./report)",
    )
    parser.add_argument(
        "--smoothing",
        type=float,
        default=DEFAULT_SMOOTHING,
        help="EMA weight of the smoothed lines, in [0, 1) (default %(default)s)",
    )
    parser.add_argument(
        "--max-points",
        type=int,
        default=DEFAULT_MAX_POINTS,
        help="subsample lines to at most this many points (default %(default)s)",
    )
    parser.add_argument(
        "--lenient",
        action="store_true",
        help="skip undecodable lines anywhere in metrics.jsonl (default: only "
        "a truncated last line is skipped)",
    )
    parser.add_argument("--title", default=None, help="report title")
    parser.add_argument(
        "--plots",
        default=None,
        help=f"comma list of plots to draw (default: all of {','.join(PLOT_NAMES)})",
    )


def run(args: argparse.Namespace) -> int:
    if args.output is not None:
        out = Path(args.output)
    elif len(args.run_dirs) == 1:
        out = Path(args.run_dirs[0]) / "report"
    else:
        out = Path("report")
    try:
        result = build_report(
            args.run_dirs,
            out,
            title=args.title,
            smoothing=args.smoothing,
            max_points=args.max_points,
            lenient=args.lenient,
            plots=None if args.plots is None else [p.strip() for p in args.plots.split(",")],
        )
    except ValueError as exc:
        print(f"mgrpo report: error: {exc}", file=sys.stderr)
        return 2
    for note in result.notes:
        print(f"note: {note}", file=sys.stderr)
    print(Path(result.markdown).read_text(encoding="utf-8"))
    print(f"wrote {result.html} and {len(result.plots)} plots in {result.seconds:.2f} s")
    return 0
