"""`mgrpo lab build [--force] [--quick]` and `mgrpo lab info`: build and inspect the lab model.

`build` prints the cached model directory and the measurement stored with it (mean sample
accuracy and maj@G on held-out problems of the hard RL task). `info` prints the config,
the distributions, the template and the manifest of the cached entry, without building.
"""

from __future__ import annotations

import argparse
import json
import time

ACTIONS = ("build", "info")


def configure_parser(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="action", metavar="ACTION")
    build = sub.add_parser("build", help="build the lab model (reuses a valid cache entry)")
    build.add_argument("--force", action="store_true", help="rebuild even if a valid entry exists")
    build.add_argument("--quick", action="store_true",
                       help="the tiny quick config (seconds; for smoke tests, learns nothing)")
    build.add_argument("--cache-dir", default=None,
                       help="lab cache root (default: $MGRPO_CACHE_DIR/lab or ~/.cache/mgrpo/lab)")
    build.add_argument("--no-progress", action="store_true", help="no progress bar")
    info = sub.add_parser("info", help="show the lab config and the cached entry's manifest")
    info.add_argument("--quick", action="store_true", help="describe the quick config")
    info.add_argument("--cache-dir", default=None, help="lab cache root")
    info.add_argument("--json", action="store_true", help="print the manifest as JSON")


def _config(quick: bool):
    # lazy, start-up: the target imports torch
    from mgrpo.lab.config import DEFAULT_LAB_CONFIG, QUICK_LAB_CONFIG

    return QUICK_LAB_CONFIG if quick else DEFAULT_LAB_CONFIG


def _run_build(args: argparse.Namespace) -> int:
    # lazy, start-up: the target imports torch
    from mgrpo.lab.build import build_lab_model, format_metrics
    from mgrpo.lab.cache import read_manifest

    config = _config(args.quick)
    start = time.perf_counter()
    path = build_lab_model(config, cache_dir=args.cache_dir, progress=not args.no_progress,
                           force=args.force)
    manifest = read_manifest(path)
    print(f"lab model: {path}")
    print(f"ready in {time.perf_counter() - start:.1f}s "
          f"(built in {manifest.get('build_seconds', float('nan')):.1f}s on "
          f"{manifest.get('threads')} threads)")
    print(format_metrics(manifest))
    return 0


def _run_info(args: argparse.Namespace) -> int:
    # lazy, start-up: the target imports torch
    from mgrpo.lab.build import format_metrics, lab_info, lab_model_path
    from mgrpo.lab.cache import CorruptCacheError, verify_entry

    config = _config(args.quick)
    path = lab_model_path(config, args.cache_dir)
    manifest = lab_info(config, args.cache_dir)
    if args.json:
        print(json.dumps(manifest, indent=2, sort_keys=True))
        return 0
    print(f"config hash: {config.config_hash()}")
    print(f"model: llama, hidden {config.hidden_size}, {config.num_layers} layers, "
          f"{config.num_heads} heads ({config.num_kv_heads} kv)")
    print("SFT mixture: " + "; ".join(f"{w:.0%} {spec.describe()}" for w, spec in config.sft_mix))
    print(f"SFT: {config.sft_steps} steps x {config.batch_size}, lr {config.lr}")
    print(f"RL task: {config.task.describe()}")
    print(f"template: {config.template!r}")
    if manifest is None:
        print(f"cache: {path} (not built; run `mgrpo lab build`)")
        return 0
    try:
        verify_entry(path, config.config_hash())
        state = "valid"
    except CorruptCacheError as err:
        state = f"CORRUPT ({err})"
    print(f"cache: {path} ({state})")
    print(f"built {manifest.get('created')} in {manifest.get('build_seconds', float('nan')):.1f}s "
          f"on {manifest.get('threads')} threads")
    print(format_metrics(manifest))
    return 0


def run(args: argparse.Namespace) -> int:
    if args.action == "build":
        return _run_build(args)
    if args.action == "info":
        return _run_info(args)
    print(f"usage: mgrpo lab {{{','.join(ACTIONS)}}} (see `mgrpo lab --help`)")
    return 2
