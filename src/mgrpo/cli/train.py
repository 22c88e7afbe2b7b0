"""`mgrpo train [RECIPE] [-o OUTPUT_DIR] [--resume] [key=value ...]`."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from mgrpo.config import ConfigError, dump_config, resolve_config, shipped_recipes
from mgrpo.kernel_path import is_lab_model_name, pin_lab_kernels
from mgrpo.methods import PRESETS
from mgrpo.parallel.launch import launch

INTERMIXED_ARGS = True  # `mgrpo train tiny -o out key=value` (see cli.main)


def configure_parser(parser: argparse.ArgumentParser) -> None:
    parser.description = (
        f"Train with M-GRPO or a baseline: algorithm.preset is one of {', '.join(PRESETS.names())} "
        "(docs/methods.md). RECIPE is a YAML file or a shipped recipe name (default: demo). "
        "Overrides use dotted keys, e.g. algorithm.rollouts=16 optim.lr=2e-6; every key: "
        "docs/config.md."
    )
    parser.add_argument("recipe", nargs="?", default=None, help="YAML path or shipped recipe name")
    parser.add_argument("overrides", nargs="*", metavar="key=value", help="dotted config overrides")
    parser.add_argument("-o", "--output-dir", default=None, help="run directory (default: runs/<recipe>)")
    parser.add_argument("--resume", action="store_true", help="continue from the latest complete checkpoint")
    parser.add_argument("--print-config", action="store_true", help="print the resolved config and exit")
    parser.add_argument("--list-recipes", action="store_true", help="list shipped recipes and exit")
    parser.add_argument("--nproc", type=int, default=None, metavar="N",
                        help="run N data-parallel processes on this machine (re-runs under torchrun)")


def run(args: argparse.Namespace) -> int:
    if args.list_recipes:
        print("\n".join(shipped_recipes()))
        return 0
    recipe, overrides = args.recipe, list(args.overrides)
    if recipe is not None and "=" in recipe and not Path(recipe).exists():
        overrides.insert(0, recipe)  # `mgrpo train key=value` means the default recipe
        recipe = None
    try:
        cfg = resolve_config(recipe, overrides)
    except ConfigError as exc:
        print(f"mgrpo train: config error: {exc}", file=sys.stderr)
        return 2
    if args.print_config:
        print(dump_config(cfg), end="")
        return 0
    if is_lab_model_name(cfg.model.name):  # before torch runs a kernel (may re-execute)
        pin_lab_kernels(cfg.model.lab_kernels, args.command_argv)
    if args.nproc is not None:
        try:
            argv = ([recipe] if recipe else []) + overrides
            argv += ["-o", args.output_dir] if args.output_dir else []
            return launch(args.nproc, argv + (["--resume"] if args.resume else []))
        except ValueError as exc:
            print(f"mgrpo train: error: {exc}", file=sys.stderr)
            return 2
    name = Path(recipe).stem if recipe else "demo"
    output = Path(args.output_dir or Path("runs") / name)

    # lazy, start-up: the target imports torch
    from mgrpo.parallel.distributed import RankLostError
    from mgrpo.train.run.checkpoint import CheckpointError
    from mgrpo.train.run.trainer import TrainingError, TrainingInterrupted, train
    from mgrpo.user_functions import UserFunctionError

    try:
        train(cfg, output, resume=args.resume)
    except ConfigError as exc:  # found before any model loads or the run directory is touched
        print(f"mgrpo train: config error: {exc}", file=sys.stderr)
        return 2
    except UserFunctionError as exc:  # the user's frames (if it raised), then one line
        if exc.user_traceback:
            print(exc.user_traceback, end="", file=sys.stderr)
        print(f"mgrpo train: error: {exc}", file=sys.stderr)
        return 2
    except (TrainingError, ValueError, FileNotFoundError, RankLostError) as exc:
        print(f"mgrpo train: error: {exc}", file=sys.stderr)
        return 1
    except CheckpointError as exc:
        print(f"mgrpo train: error: {exc}; {_last_checkpoint(output)}", file=sys.stderr)
        return 1
    except OSError as exc:  # disk full, permission denied, ... while writing the run
        print(f"mgrpo train: error: {_os_error(exc)}; {_last_checkpoint(output)}", file=sys.stderr)
        return 1
    except TrainingInterrupted as exc:
        print(f"mgrpo train: {exc}", file=sys.stderr)
        return 128 + exc.signum
    except KeyboardInterrupt:
        print("mgrpo train: interrupted; the last complete checkpoint is kept", file=sys.stderr)
        return 130
    return 0


def _os_error(exc: OSError) -> str:
    """`I/O failure /path: No space left on device (errno 28)` (one line)."""
    what = exc.strerror or str(exc)
    where = f" {exc.filename}" if exc.filename else ""
    return f"I/O failure{where}: {what}" + (f" (errno {exc.errno})" if exc.errno else "")


def _last_checkpoint(output: Path) -> str:
    # lazy, start-up: the target imports torch
    from mgrpo.train.run.checkpoint import latest_checkpoint
    from mgrpo.train.run.run_dir import CHECKPOINTS_DIR

    try:
        ckpt = latest_checkpoint(output / CHECKPOINTS_DIR)
    except OSError:
        return "the checkpoint directory is unreadable"
    if ckpt is None:
        return "no complete checkpoint was written yet"
    return f"the last complete checkpoint {ckpt} is intact (--resume continues from it)"
