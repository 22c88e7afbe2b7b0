"""`mgrpo lab build [--world NAME] [--force] [--quick]` and `mgrpo lab info [--world NAME]`:
build and inspect a lab model (`mgrpo lab list` names the worlds).

`build` prints the cached model directory and the measurement stored with it (mean sample
accuracy and maj@G on held-out problems of the hard RL task). `info` prints the config,
the distributions, the template and the manifest of the cached entry, without building.
"""

from __future__ import annotations

import argparse
import json
import sys
import time

from mgrpo.kernel_path import LAB_KERNEL_MODES, pin_lab_kernels

ACTIONS = ("build", "info", "list", "measure")


def configure_parser(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="action", metavar="ACTION")
    build = sub.add_parser("build", help="build the lab model (reuses a valid cache entry)")
    build.add_argument("--force", action="store_true", help="rebuild even if a valid entry exists")
    build.add_argument("--world", default=None, metavar="NAME",
                       help="a named lab world (`mgrpo lab list`; default: the demo's world)")
    build.add_argument("--quick", action="store_true",
                       help="the tiny quick config (seconds; for smoke tests, learns nothing)")
    build.add_argument("--cache-dir", default=None,
                       help="lab cache root (default: $MGRPO_CACHE_DIR/lab or ~/.cache/mgrpo/lab)")
    build.add_argument("--no-progress", action="store_true", help="no progress bar")
    info = sub.add_parser("info", help="show the lab config and the cached entry's manifest")
    info.add_argument("--world", default=None, metavar="NAME", help="a named lab world")
    info.add_argument("--quick", action="store_true", help="describe the quick config")
    info.add_argument("--cache-dir", default=None, help="lab cache root")
    info.add_argument("--json", action="store_true", help="print the manifest as JSON")
    for action in (build, info):
        _kernel_option(action)
    sub.add_parser("list", help="the named lab worlds and what each changes")
    measure = sub.add_parser("measure", help="sample accuracy and maj@G of a built world at a "
                             "chosen temperature and G (builds the world if needed)")
    measure.add_argument("--world", default=None, metavar="NAME", help="a named lab world")
    measure.add_argument("--quick", action="store_true", help="the quick config")
    measure.add_argument("--cache-dir", default=None, help="lab cache root")
    measure.add_argument("--samples", type=int, default=16, help="G samples per problem (16)")
    measure.add_argument("--temperature", type=float, default=1.1, help="sampling T (1.1)")
    measure.add_argument("--problems", type=int, default=128, help="val problems (128)")
    measure.add_argument("--seed", type=int, default=0, help="problem draw and sampling seed")
    _kernel_option(measure)


def _kernel_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--lab-kernels", choices=LAB_KERNEL_MODES, default="avx2",
                        help="x86 CPU kernel path (avx2: pinned, the studies' path, default; "
                        "native: this CPU's own; see mgrpo.kernel_path)")


def _config(args: argparse.Namespace):
    """The LabConfig of `--quick` or `--world NAME` (default world when neither)."""
    # lazy, start-up: the target imports torch
    from mgrpo.lab.config import QUICK_LAB_CONFIG
    from mgrpo.lab.worlds import DEFAULT_WORLD, lab_world

    if args.quick and args.world:
        raise ValueError("--quick and --world are exclusive")
    return QUICK_LAB_CONFIG if args.quick else lab_world(args.world or DEFAULT_WORLD).config


def _run_build(args: argparse.Namespace) -> int:
    # lazy, start-up: the target imports torch
    from mgrpo.lab.build import build_lab_model, format_metrics
    from mgrpo.lab.cache import read_manifest

    config = _config(args)
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
    from mgrpo.lab.build import build_mismatch, format_metrics, lab_info, lab_model_path
    from mgrpo.lab.cache import CorruptCacheError, verify_entry

    config = _config(args)
    path = lab_model_path(config, args.cache_dir)
    manifest = lab_info(config, args.cache_dir)
    if args.json:
        print(json.dumps(manifest, indent=2, sort_keys=True))
        return 0
    print(f"config hash: {config.config_hash()}")
    print(f"model: llama, hidden {config.hidden_size}, {config.num_layers} layers, "
          f"{config.num_heads} heads ({config.num_kv_heads} kv)")
    print("SFT mixture: " + "; ".join(f"{w:.0%} {spec.describe()}" for w, spec in config.sft_mix))
    noise = (f", answer noise {config.answer_noise:.0%} (slips of 1-{config.noise_max})"
             if config.answer_noise else "")
    print(f"SFT: {config.sft_steps} steps x {config.batch_size}, lr {config.lr}{noise}")
    print(f"RL task: {config.task.describe()}")
    print(f"template: {config.template!r}")
    if manifest is None:
        hint = f" --world {args.world}" if args.world else ""
        print(f"cache: {path} (not built; run `mgrpo lab build{hint}`)")
        return 0
    try:
        verify_entry(path, config.config_hash())
        state = "valid"
    except CorruptCacheError as err:
        state = f"CORRUPT ({err})"
    print(f"cache: {path} ({state})")
    print(f"built {manifest.get('created')} in {manifest.get('build_seconds', float('nan')):.1f}s "
          f"on {manifest.get('threads')} threads")
    versions = manifest.get("versions") or {}
    sha = (manifest.get("files") or {}).get("model.safetensors", "?")
    print("build: model.safetensors sha256 " + str(sha)[:16] + ", " + ", ".join(
        f"{k} {versions[k]}" for k in ("torch", "transformers", "cpu_capability") if k in versions)
        + "".join(f", {k}={v}" for k, v in sorted((versions.get("kernel_env") or {}).items())))
    note = build_mismatch(manifest)
    if note:
        print(f"note: {note}")
    print(format_metrics(manifest))
    return 0


def _run_measure(args: argparse.Namespace) -> int:
    # lazy, start-up: the target imports torch
    from mgrpo.lab.build import build_lab_model, measure_world

    config = _config(args)
    path = build_lab_model(config, cache_dir=args.cache_dir, progress=False)
    m = measure_world(path, config, problems=args.problems, samples=args.samples,
                      temperature=args.temperature, seed=args.seed)
    print(f"{path}: {m['n_problems']} val problems (seed {args.seed}) x {m['samples']} samples at "
          f"T={m['temperature']}: sample accuracy {m['sample_accuracy']:.1%}, maj@{m['samples']} "
          f"{m['maj_accuracy']:.1%} (gap {100 * m['maj_minus_sample']:+.1f} points), answer rate "
          f"{m['answer_rate']:.1%}")
    return 0


def _run_list() -> int:
    # lazy, start-up: the target imports torch
    from mgrpo.lab.worlds import WORLDS

    for world in WORLDS.values():
        print(f"{world.name:<16} {world.config.config_hash()}  {world.summary}")
    return 0


def run(args: argparse.Namespace) -> int:
    if args.action == "list":
        return _run_list()
    if args.action in ACTIONS:  # before torch runs a kernel (may re-execute)
        pin_lab_kernels(args.lab_kernels, args.command_argv)
    try:
        if args.action == "build":
            return _run_build(args)
        if args.action == "info":
            return _run_info(args)
        if args.action == "measure":
            return _run_measure(args)
    except ValueError as err:
        if "lab world" not in str(err) and "--quick" not in str(err):
            raise
        print(f"mgrpo lab: error: {err}", file=sys.stderr)
        return 2
    print(f"usage: mgrpo lab {{{','.join(ACTIONS)}}} (see `mgrpo lab --help`)")
    return 2
