"""The `mgrpo` command line: a thin, lazily-importing dispatcher.

`mgrpo --help` must stay fast (no torch/transformers import), so each subcommand
lives in its own module that is imported only when that subcommand runs. A
subcommand module defines `configure_parser(parser)` and `run(args) -> int`.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence

from mgrpo import __version__
from mgrpo.methods import PRESETS  # names only: the method modules import no torch
from mgrpo.progress import quiet_library_bars

# name -> (module implementing configure_parser/run, one-line help)
COMMANDS: dict[str, tuple[str, str]] = {
    "train": ("mgrpo.cli.train", f"train with a preset ({', '.join(PRESETS.names())})"),
    "report": ("mgrpo.cli.report", "plots and an HTML report of one or more run directories"),
    "compare": ("mgrpo.cli.compare", "run a recipe under several arms / G / seeds; aggregate over seeds"),
    "eval": ("mgrpo.cli.eval", "benchmark accuracy (avg@k, pass@k, maj@k) of a model or checkpoint"),
    "lab": ("mgrpo.cli.lab", "build / inspect the embedded lab model (tiny Llama SFT'd on arithmetic)"),
}


def _top_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="mgrpo",
        description="Label-free RL for LLM reasoning: M-GRPO and its baselines.",
    )
    parser.add_argument("--version", action="version", version=f"mgrpo {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name, (_, help_text) in COMMANDS.items():
        sub.add_parser(name, help=help_text, add_help=False)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    in_process = argv is not None  # a caller's list, not this process's own command line
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] not in COMMANDS:
        parser = _top_parser()
        if not argv:
            parser.print_help()
            return 0
        parser.parse_args(argv)  # handles --help/--version/unknown command, exits
        return 2
    name, rest = argv[0], argv[1:]
    quiet_library_bars()  # before a subcommand imports transformers
    module = importlib.import_module(COMMANDS[name][0])
    parser = argparse.ArgumentParser(prog=f"mgrpo {name}", description=COMMANDS[name][1])
    module.configure_parser(parser)
    # Commands taking free `key=value` positionals after options opt into intermixed parsing.
    if getattr(module, "INTERMIXED_ARGS", False):
        args = parser.parse_intermixed_args(rest)
    else:
        args = parser.parse_args(rest)
    # what a subcommand re-executes to change its environment (`kernel_path`); None in-process
    args.command_argv = None if in_process else [name, *rest]
    return int(module.run(args) or 0)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
