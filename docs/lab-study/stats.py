"""Tables with confidence intervals over the seeds of a sweep (docs/lab-study.md).

    python docs/lab-study/stats.py results/lab-study/long-regime > docs/lab-study/long-regime/stats.md
    python docs/lab-study/stats.py results/lab-study/runs --arms srt,m-grpo,m-grpo-N8

A thin caller of `mgrpo.report.contrasts` (the tables `mgrpo compare --baseline srt` writes to
its stats.md; their definitions are in that module's docstring). Runs are grouped by
directory name without its ``-s<seed>`` suffix (``--arms`` keeps only the named groups); only
runs that reached ``trainer.max_steps`` count. Rows follow the study's arm order; srt is the
reference. ``--pair`` adds a contrast to the table of paired contrasts; ``--family FILE`` adds
the declared families of a YAML file (docs/lab-study/mechanism/family.yaml).
"""

from __future__ import annotations

import argparse
import re
import sys
from pathlib import Path

from mgrpo.report.arms import COLLAPSE_CONFIRM_POINTS
from mgrpo.report.contrasts import RunOutcome, load_families, run_outcome, study_tables
from mgrpo.report.runs import load_run
from mgrpo.report.sweep import parse_seeds, run_state

SEED = re.compile(r"^(?P<arm>.+)-s(?P<seed>\d+)$")
REFERENCE = "srt"
#: order of the rows; arms not listed follow in name order
ARM_ORDER = ("srt", "ttrl", "m-grpo", "m-grpo-N8", "m-grpo-noIQR", "m-grpo-mvw3",
             "m-grpo-ties", "co-rewarding-ii", "co-rewarding-ii-m99", "co-rewarding-ii-N8", "grpo")


def load(sweep: Path, arms: set[str] | None = None, seeds: set[int] | None = None,
         confirm: int = COLLAPSE_CONFIRM_POINTS) -> dict[str, dict[int, RunOutcome]]:
    runs: dict[str, dict[int, RunOutcome]] = {}
    for path in sorted(p for p in sweep.iterdir() if p.is_dir()):
        match = SEED.match(path.name)
        if (not match or (arms and match["arm"] not in arms)
                or (seeds and int(match["seed"]) not in seeds) or run_state(path) != "complete"):
            continue
        outcome = run_outcome(load_run(path, lenient=True).metrics, confirm)
        runs.setdefault(match["arm"], {})[int(match["seed"])] = outcome
    order = {arm: i for i, arm in enumerate(ARM_ORDER)}
    return dict(sorted(runs.items(), key=lambda kv: (order.get(kv[0], len(order)), kv[0])))


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("sweep", type=Path, help="sweep directory (runs named ARM-sSEED)")
    parser.add_argument("--arms", default=None, help="comma list of arms to keep (default all)")
    parser.add_argument("--seeds", default=None,
                        help="seeds to keep, a comma list or range such as 6-10 (default all)")
    parser.add_argument("--pair", action="append", default=[], metavar="ARM:BASE",
                        help="one more paired contrast, ARM minus BASE, in the contrast family")
    parser.add_argument("--family", type=Path, default=None, metavar="FILE",
                        help="YAML file of declared contrast families (Holm within each)")
    parser.add_argument("--collapse-confirm", type=int, default=COLLAPSE_CONFIRM_POINTS,
                        metavar="N", help="later validation points that must confirm a collapse "
                        f"(default {COLLAPSE_CONFIRM_POINTS}; 0: the rule without confirmation)")
    args = parser.parse_args(argv)
    try:
        seeds = set(parse_seeds(args.seeds)) if args.seeds else None
        families = load_families(args.family) if args.family else []
    except ValueError as err:
        parser.error(str(err))
    extra = []
    for text in args.pair:
        arm, sep, base = text.partition(":")
        if not sep or not arm or not base:
            parser.error(f"--pair {text!r}: expected ARM:BASE")
        extra.append((arm, base))
    runs = load(args.sweep, set(args.arms.split(",")) if args.arms else None, seeds,
                args.collapse_confirm)
    if not runs:
        parser.error(f"{args.sweep}: no complete run named ARM-sSEED")
    shown = (" --arms " + args.arms if args.arms else "") + (
        " --seeds " + args.seeds if args.seeds else "") + "".join(
        " --pair " + text for text in args.pair) + (
        f" --family {args.family}" if args.family else "") + (
        f" --collapse-confirm {args.collapse_confirm}"
        if args.collapse_confirm != COLLAPSE_CONFIRM_POINTS else "")
    try:
        tables = study_tables(runs, REFERENCE, extra, families)
    except ValueError as err:
        parser.error(f"{args.sweep}: {err}")
    print(f"<!-- written by: python docs/lab-study/stats.py {args.sweep}{shown} -->\n")
    sys.stdout.write(tables)


if __name__ == "__main__":
    main()
