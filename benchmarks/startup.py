"""Start-up cost of the `mgrpo` command: `mgrpo --help` and the first step of `mgrpo train tiny`.

Each measurement is a fresh process, repeated `--runs` times; medians are reported with the
min/max and the peak RSS of the child (`wait4` rusage, like `/usr/bin/time -v`'s "Maximum
resident set size"). Targets: `mgrpo --help` < 1 s; the first training step of
`mgrpo train tiny` starts < 5 s after the command.

  help        `python -m mgrpo --help` (the console script does the same import), wall time;
              also checks that torch / transformers are NOT imported by it.
  first_step  `python -m mgrpo train tiny -o DIR trainer.max_steps=1 ...`: the first step's
              start time is (the moment the first metrics.jsonl line appears, polled every
              10 ms) - (that line's `time/step`), measured from the process launch. It includes
              interpreter start, imports, model/tokenizer build, data, the pre-training
              validation pass of the recipe, and the start of the loop.
  total       the same command's full wall time (one step, the final validation, checkpoint).
  floor       `python -c "import torch; from transformers import LlamaForCausalLM"`, run
              before each train run: what any HF-Llama trainer imports before its first step;
              `first_step_over_floor_s` is mgrpo's own share (per-run differences).
  import_*    `python -X importtime -c "import mgrpo.train.run.trainer"`-style cumulative import times of
              the heaviest top-level packages (one run), to see what start-up is made of.

    python benchmarks/startup.py --runs 5

Prints the load average (other agents' processes inflate these numbers), then ONE JSON
object as the last line.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

HELP_TARGET_S = 1.0
FIRST_STEP_TARGET_S = 5.0
POLL_S = 0.01
TRAIN_ARGS = ["trainer.max_steps=1", "trainer.progress=false", "trainer.save_every=0"]
# what any trainer of a HF Llama must import before its first step: the start-up floor
FLOOR_CODE = "import torch; from transformers import LlamaForCausalLM"


def timed_child(cmd: list[str], env: dict[str, str], metrics: Path | None = None) -> dict:
    """Run `cmd`; return wall s, peak RSS MB, return code and (if `metrics`) first-line time."""
    first_line_at: list[float] = []
    stop = threading.Event()
    t0 = time.perf_counter()
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)

    def poll() -> None:
        while not stop.is_set():
            if metrics is not None and metrics.exists() and metrics.stat().st_size > 0:
                first_line_at.append(time.perf_counter() - t0)
                return
            time.sleep(POLL_S)

    watcher = threading.Thread(target=poll, daemon=True)
    watcher.start()
    out, err = proc.communicate()
    wall = time.perf_counter() - t0
    stop.set()
    watcher.join()
    return {"wall_s": wall, "rc": proc.returncode, "stdout": out.decode(errors="replace"),
            "stderr": err.decode(errors="replace")[-2000:],
            "first_line_s": first_line_at[0] if first_line_at else None}


def run_with_rss(cmd: list[str], env: dict[str, str], metrics: Path | None = None) -> dict:
    """`timed_child` plus the child's own peak RSS (fork + wait4 on a tiny wrapper)."""
    wrapper = [sys.executable, "-c", _RSS_WRAPPER, json.dumps(cmd)]
    res = timed_child(wrapper, env, metrics)
    lines = res["stderr"].strip().splitlines()
    rss = None
    if lines and lines[-1].startswith("MAXRSS_KB="):
        rss = int(lines[-1].split("=", 1)[1]) / 1024
    res["peak_rss_mb"] = rss
    return res


# Runs the command as a child and prints its ru_maxrss (KB) to stderr: the wrapper's own
# interpreter start (~20 ms) is shared by every measurement, so it is not subtracted.
_RSS_WRAPPER = (
    "import json, os, sys, subprocess\n"
    "p = subprocess.Popen(json.loads(sys.argv[1]))\n"
    "_, status, ru = os.wait4(p.pid, 0)\n"
    "sys.stderr.write(f'\\nMAXRSS_KB={ru.ru_maxrss}\\n')\n"
    "sys.exit(os.waitstatus_to_exitcode(status))\n"
)


def median_summary(xs: list[float]) -> dict:
    return {"median": round(statistics.median(xs), 3), "min": round(min(xs), 3),
            "max": round(max(xs), 3), "runs": len(xs)}


def import_times(env: dict[str, str]) -> dict[str, float]:
    """Cumulative import time (s) of selected packages when importing the training stack."""
    code = "import mgrpo.cli, mgrpo.cli.train, mgrpo.train.run.trainer"
    proc = subprocess.run([sys.executable, "-X", "importtime", "-c", code], env=env,
                          capture_output=True, text=True, check=False)
    wanted = ("torch", "transformers", "mgrpo.train.run.trainer", "mgrpo.train.step", "mgrpo.answers",
              "tokenizers", "safetensors", "yaml", "tqdm", "numpy", "math_verify", "sympy",
              "torch.utils.tensorboard", "tensorboard", "datasets", "matplotlib")
    out: dict[str, float] = {}
    for line in proc.stderr.splitlines():
        parts = [p.strip() for p in line.split("|")]
        if len(parts) == 3 and parts[2] in wanted and parts[1].isdigit():
            out[parts[2]] = round(int(parts[1]) / 1e6, 3)
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--skip-train", action="store_true")
    parser.add_argument("--override", action="append", default=[], metavar="KEY=VALUE",
                        help="extra override for `mgrpo train tiny` (repeatable), e.g. "
                             "trainer.threads=1")
    args = parser.parse_args(argv)
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    load_before = [round(x, 2) for x in os.getloadavg()]

    help_wall, help_rss = [], []
    for _ in range(args.runs):
        r = run_with_rss([sys.executable, "-m", "mgrpo", "--help"], env)
        if r["rc"] != 0:
            raise RuntimeError(f"mgrpo --help failed: {r['stderr']}")
        help_wall.append(r["wall_s"])
        help_rss.append(r["peak_rss_mb"])
    probe = subprocess.run(
        [sys.executable, "-c", "import sys, mgrpo.cli as c; c._top_parser().format_help(); "
         "print(sorted(m for m in ('torch', 'transformers', 'numpy') if m in sys.modules))"],
        env=env, capture_output=True, text=True, check=True)
    heavy_in_help = json.loads(probe.stdout.strip().replace("'", '"'))

    first, total, train_rss, floor = [], [], [], []
    if not args.skip_train:
        for i in range(args.runs):
            r = timed_child([sys.executable, "-c", FLOOR_CODE], env)  # interleaved, same minute
            if r["rc"] != 0:
                raise RuntimeError(f"import floor probe failed: {r['stderr']}")
            floor.append(r["wall_s"])
            with tempfile.TemporaryDirectory(prefix="mgrpo-startup-") as tmp:
                out = Path(tmp) / f"run{i}"
                cmd = [sys.executable, "-m", "mgrpo", "train", "tiny", "-o", str(out), *TRAIN_ARGS,
                       *args.override]
                r = run_with_rss(cmd, env, metrics=out / "metrics.jsonl")
                if r["rc"] != 0:
                    raise RuntimeError(f"mgrpo train tiny failed: {r['stderr']}")
                line = json.loads((out / "metrics.jsonl").read_text().splitlines()[0])
                first.append(r["first_line_s"] - line["time/step"])
                total.append(r["wall_s"])
                train_rss.append(r["peak_rss_mb"])
    imports = import_times(env)
    load_after = [round(x, 2) for x in os.getloadavg()]

    help_s = median_summary(help_wall)
    print(f"loadavg before {load_before} after {load_after} ({os.cpu_count()} CPUs)")
    print(f"mgrpo --help          median {help_s['median']:.3f} s (min {help_s['min']:.3f}, "
          f"max {help_s['max']:.3f}), peak RSS {statistics.median(help_rss):.0f} MB, "
          f"heavy modules imported: {heavy_in_help or 'none'}  [target < {HELP_TARGET_S} s]")
    result = {
        "benchmark": "startup", "python": platform.python_version(), "cpus": os.cpu_count(),
        "loadavg_before": load_before, "loadavg_after": load_after, "overrides": args.override,
        "help_s": help_s, "help_peak_rss_mb": round(statistics.median(help_rss), 1),
        "help_imports_heavy": heavy_in_help, "import_cumulative_s": imports,
        "meets_help_target": help_s["median"] < HELP_TARGET_S and not heavy_in_help,
    }
    if first:
        fs, ts = median_summary(first), median_summary(total)
        print(f"train tiny: 1st step  median {fs['median']:.3f} s (min {fs['min']:.3f}, max "
              f"{fs['max']:.3f}) after launch  [target < {FIRST_STEP_TARGET_S} s]")
        print(f"train tiny: total     median {ts['median']:.3f} s, peak RSS "
              f"{statistics.median(train_rss):.0f} MB")
        fl = median_summary(floor)
        over = median_summary([a - b for a, b in zip(first, floor, strict=True)])
        print(f"import floor          median {fl['median']:.3f} s (`python -c '{FLOOR_CODE}'`, "
              f"min {fl['min']:.3f}, max {fl['max']:.3f}); 1st step - floor: median "
              f"{over['median']:.3f} s")
        result.update(first_step_s=fs, train_total_s=ts, import_floor_s=fl,
                      first_step_over_floor_s=over,
                      train_peak_rss_mb=round(statistics.median(train_rss), 1),
                      meets_first_step_target=fs["median"] < FIRST_STEP_TARGET_S)
    print("cumulative import s (import mgrpo.train.run.trainer): "
          + ", ".join(f"{k} {v}" for k, v in sorted(imports.items(), key=lambda kv: -kv[1])))
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
