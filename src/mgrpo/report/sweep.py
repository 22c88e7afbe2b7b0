"""The sweep engine of `mgrpo compare`: arms, the run plan, and running it (resumably,
several jobs side by side). The command, the tables and the report are in
:mod:`mgrpo.report.compare`, whose docstring describes the behaviour."""

from __future__ import annotations

import itertools
import os
import queue
import re
import subprocess
import sys
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from mgrpo.kernel_path import is_lab_model_name
from mgrpo.methods import PRESETS
from mgrpo.report.runs import (
    CONFIG_FILE,
    RUN_NAME_KEY,
    MetricsError,
    flatten_config,
    metrics_file,
    read_config,
    read_metrics,
)
from mgrpo.train.run.run_dir import CHECKPOINTS_DIR

PRESET_KEY = "algorithm.preset"
ROLLOUTS_KEY = "algorithm.rollouts"
SEED_KEY = "seed"
MAX_STEPS_KEY = "trainer.max_steps"
THREADS_KEY = "trainer.threads"
PROGRESS_KEY = "trainer.progress"
LOG_SUBDIR = "logs"
MIN_ROLLOUTS = 2
ARM_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._+]*(-[A-Za-z0-9._+]+)*$")


@dataclass(frozen=True)
class Launch:
    """How one training subprocess is started: extra environment and where output goes."""

    env: dict[str, str]
    log_path: Path | None  # None: inherit this terminal


#: runner(argv, run_dir, launch) -> exit status; the default runs argv as a subprocess
Runner = Callable[[list[str], Path, Launch], int]


def valid_presets() -> tuple[str, ...]:
    """The preset names `mgrpo train` accepts."""
    return tuple(PRESETS)


@dataclass(frozen=True)
class Arm:
    """A named configuration: a preset plus overrides (``--arm NAME=PRESET:k=v,k=v``)."""

    name: str
    preset: str
    overrides: tuple[str, ...] = ()


def parse_arm(text: str) -> Arm:
    """``NAME=PRESET[:key=value,key=value]`` -> Arm (ValueError naming the flag otherwise).

    Overrides are split at commas outside brackets, so a list or mapping value stays one
    override (``algorithm.teacher_alpha=[0.01,0.01]``); an unbalanced bracket is an error."""
    name, sep, rest = text.partition("=")
    name = name.strip()
    if not sep or not rest:
        raise ValueError(f"--arm {text!r}: expected NAME=PRESET[:key=value,...]")
    if not ARM_NAME.match(name):
        raise ValueError(
            f"--arm {text!r}: the name {name!r} must be letters, digits, '.', '_', '+' and "
            "single '-' (it names the run directories)"
        )
    preset, _, over = rest.partition(":")
    preset = preset.strip()
    valid = valid_presets()
    if preset not in valid:
        raise ValueError(f"--arm {text!r}: unknown preset {preset!r}; valid: {', '.join(valid)}")
    overrides = tuple(o.strip() for o in _split_top_level(over, text) if o.strip())
    for item in overrides:
        key, eq, _ = item.partition("=")
        if not eq or not key:
            raise ValueError(f"--arm {text!r}: {item!r} is not of the form key=value")
        if key in (PRESET_KEY, SEED_KEY):
            raise ValueError(f"--arm {text!r}: {key} is set by the arm's preset / --seeds")
    return Arm(name, preset, overrides)


def _split_top_level(over: str, text: str) -> list[str]:
    """Split `over` at the commas that lie outside [] and {} (ValueError on a bad bracket)."""
    parts: list[str] = []
    depth, start = 0, 0
    for i, char in enumerate(over):
        if char in "[{":
            depth += 1
        elif char in "]}":
            depth -= 1
            if depth < 0:
                raise ValueError(f"--arm {text!r}: {char!r} closes no bracket")
        elif char == "," and depth == 0:
            parts.append(over[start:i])
            start = i + 1
    if depth:
        raise ValueError(f"--arm {text!r}: a bracket is not closed")
    parts.append(over[start:])
    return parts


@dataclass(frozen=True)
class RunSpec:
    """One cell of the sweep: an arm (preset + overrides) x G x seed."""

    preset: str
    rollouts: int | None
    seed: int | None
    arm: str | None = None  # None: the preset's name
    arm_overrides: tuple[str, ...] = ()

    @property
    def arm_name(self) -> str:
        return self.arm or self.preset

    @property
    def dirname(self) -> str:
        parts = [self.arm_name]
        if self.rollouts is not None:
            parts.append(f"G{self.rollouts}")
        if self.seed is not None:
            parts.append(f"s{self.seed}")
        return "-".join(parts)

    @property
    def group(self) -> str:
        """The aggregation key: the directory name without the seed."""
        return self.arm_name + (f"-G{self.rollouts}" if self.rollouts is not None else "")

    def overrides(self) -> list[str]:
        out = [f"{PRESET_KEY}={self.preset}"]
        if self.rollouts is not None:
            out.append(f"{ROLLOUTS_KEY}={self.rollouts}")
        if self.seed is not None:
            out.append(f"{SEED_KEY}={self.seed}")
        return out


def parse_seeds(text: str) -> list[int]:
    """``--seeds`` text (``"0-4"``, ``"1,3,6-10"``) -> the seeds in order (ValueError naming
    the flag on a non-integer, a negative or a repeated seed, or an empty range)."""
    return [int(seed) for seed in _int_list(text, "seeds", 0) if seed is not None]


def _int_list(text: str | None, name: str, minimum: int) -> list[int | None]:
    """``"0,1,2"`` or ranges ``"0-4"`` (inclusive), mixed: ``"0-2,7"``."""
    if text is None:
        return [None]
    values: list[int | None] = []
    for item in text.split(","):
        item = item.strip()
        lo, dash, hi = item.partition("-")
        try:
            chunk = list(range(int(lo), int(hi) + 1)) if dash and lo else [int(item)]
        except ValueError:
            raise ValueError(f"--{name}: {item!r} is not an integer (got {text!r})") from None
        if not chunk:
            raise ValueError(f"--{name}: empty range {item!r}")
        for value in chunk:
            if value < minimum:
                raise ValueError(f"--{name}: {value} must be >= {minimum}")
            if value in values:
                raise ValueError(f"--{name}: {value} is listed twice")
            values.append(value)
    return values


def plan_runs(
    presets: str | None,
    rollouts: str | None,
    seeds: str | None,
    arms: Sequence[str] = (),
) -> list[RunSpec]:
    """Parse the lists and return the sweep (arm-major, then G, then seed).

    Arms are the presets of ``--presets`` (in order), then the ``--arm`` specs.
    """
    names = [p.strip() for p in (presets or "").split(",") if p.strip()]
    if not names and not arms:
        raise ValueError("--presets: give at least one preset (e.g. srt,m-grpo) or an --arm")
    valid = valid_presets()
    for name in names:
        if name not in valid:
            raise ValueError(f"--presets: unknown preset {name!r}; valid: {', '.join(valid)}")
    all_arms = [Arm(n, n) for n in names] + [parse_arm(a) for a in arms]
    seen: set[str] = set()
    for arm in all_arms:
        if arm.name in seen:
            raise ValueError(f"arm {arm.name!r} is given twice (--presets / --arm)")
        seen.add(arm.name)
    gs = _int_list(rollouts, "rollouts", MIN_ROLLOUTS)
    for arm in all_arms:
        if rollouts is not None and any(o.startswith(ROLLOUTS_KEY + "=") for o in arm.overrides):
            raise ValueError(f"--arm {arm.name}: sets {ROLLOUTS_KEY}, which --rollouts sweeps")
    ss = _int_list(seeds, "seeds", 0)
    return [
        RunSpec(a.preset, g, s, None if a.overrides == () and a.name == a.preset else a.name,
                a.overrides)
        for a, g, s in itertools.product(all_arms, gs, ss)
    ]


def check_overrides(overrides: Sequence[str], spec: RunSpec) -> None:
    """Extra overrides must be key=value and must not set a swept key."""
    swept = {o.split("=", 1)[0] for o in spec.overrides()}
    for item in overrides:
        if "=" not in item or item.startswith("="):
            raise ValueError(f"override {item!r} is not of the form key=value")
        key = item.split("=", 1)[0]
        if key in swept:
            raise ValueError(
                f"override {item!r} sets {key}, which compare sweeps; "
                "use --presets/--arm/--rollouts/--seeds instead"
            )


def train_command(
    recipe: str,
    run_dir: Path,
    spec: RunSpec,
    overrides: Sequence[str],
    *,
    resume: bool = False,
    defaults: Sequence[str] = (),
) -> list[str]:
    """The exact argv of one training run: swept keys, ``defaults`` (set by compare itself,
    e.g. one thread per job), the extra overrides, then the arm's overrides."""
    argv = [sys.executable, "-m", "mgrpo", "train", recipe, "-o", str(run_dir)]
    if resume:
        argv.append("--resume")
    return argv + spec.overrides() + list(defaults) + list(overrides) + list(spec.arm_overrides)


def run_lab_models(recipe: str, specs: Sequence[RunSpec],
                   overrides: Sequence[str]) -> list[tuple[str, str]]:
    """The distinct (``model.name``, ``model.lab_kernels``) of the runs of `specs` whose model
    is a lab world, in first-seen order (the recipe with the extra and the arm's overrides
    applied, as :func:`train_command` passes them)."""
    # lazy, start-up: the config module is only needed when a sweep runs
    from mgrpo.config import apply_overrides, load_recipe

    base = load_recipe(recipe)
    found: list[tuple[str, str]] = []
    for spec in specs:
        model = apply_overrides(base, list(overrides) + list(spec.arm_overrides)).get("model") or {}
        name, kernels = model.get("name"), str(model.get("lab_kernels", "avx2"))
        if isinstance(name, str) and is_lab_model_name(name) and (name, kernels) not in found:
            found.append((name, kernels))
    return found


def build_lab_world(name: str, kernels: str) -> str:
    """Build (or find in the cache) the lab model `name` in a child `mgrpo lab build`, which
    takes the `kernels` path (`mgrpo.kernel_path`) whatever this process has loaded; its
    directory. Raises RuntimeError with the child's output when the build fails."""
    world = [] if name == "lab" else ["--world", name.partition(":")[2]]
    done = subprocess.run([sys.executable, "-m", "mgrpo", "lab", "build", "--no-progress",
                           "--lab-kernels", kernels, *world],
                          capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"building lab model {name} failed (exit {done.returncode}):\n"
                           f"{done.stdout}{done.stderr}")
    paths = [line.partition(": ")[2] for line in done.stdout.splitlines()
             if line.startswith("lab model: ")]
    return paths[0] if paths else "?"


def prebuild_models(recipe: str, specs: Sequence[RunSpec], overrides: Sequence[str],
                    log: Callable[[str], None]) -> None:
    """Build every lab model (``lab``, ``lab:NAME``) the runs will load, once, before any
    job starts: side-by-side jobs would otherwise each build the same uncached model."""
    for name, kernels in run_lab_models(recipe, specs, overrides):
        log(f"lab model {name}: {build_lab_world(name, kernels)}")


def requested_max_steps(overrides: Sequence[str]) -> int | None:
    """``trainer.max_steps`` set on the command line (last one wins), else None."""
    value = None
    for item in overrides:
        key, _, raw = item.partition("=")
        if key == MAX_STEPS_KEY:
            try:
                value = int(raw)
            except ValueError:
                raise ValueError(f"override {item!r}: {MAX_STEPS_KEY} must be an integer") from None
    return value


def run_state(run_dir: Path, max_steps: int | None = None) -> str:
    """``"missing"`` | ``"complete"`` | ``"resumable"`` | ``"incomplete"`` (no checkpoint).

    Complete = ``metrics.jsonl`` reaches ``max_steps`` (default: the run's own resolved
    ``trainer.max_steps``; pass the requested value when the sweep asks for more steps, so a
    finished shorter run is resumed rather than skipped). Training steps count from 1; a
    step-0 row (validation before training) is not a step.
    """
    if not run_dir.exists() or (run_dir.is_dir() and not any(run_dir.iterdir())):
        return "missing"
    metrics, config = metrics_file(run_dir), run_dir / CONFIG_FILE
    if metrics.is_file() and config.is_file():
        try:
            if max_steps is None:
                max_steps = flatten_config(read_config(config)).get(MAX_STEPS_KEY)
            log = read_metrics(metrics, lenient=True)
        except MetricsError:
            log = None
        if isinstance(max_steps, int) and log is not None and log.records:
            trained = sum(1 for r in log.records if r["step"] >= 1)
            if log.last_step >= max_steps or trained >= max_steps:
                return "complete"
    ckpt = run_dir / CHECKPOINTS_DIR
    if ckpt.is_dir() and any(p.is_dir() and p.name.startswith("step-") for p in ckpt.iterdir()):
        return "resumable"
    return "incomplete"


def subprocess_runner(argv: list[str], run_dir: Path, launch: Launch) -> int:
    """Default runner: a subprocess with ``launch.env`` added; output to the terminal or,
    with ``launch.log_path``, appended to that file."""
    env = {**os.environ, **launch.env}
    if launch.log_path is None:
        return subprocess.run(argv, check=False, env=env).returncode
    launch.log_path.parent.mkdir(parents=True, exist_ok=True)
    with open(launch.log_path, "a", encoding="utf-8") as fh:
        return subprocess.run(argv, check=False, env=env, stdout=fh, stderr=subprocess.STDOUT).returncode


def visible_gpus() -> list[str]:
    """CUDA devices a job may be pinned to: ``CUDA_VISIBLE_DEVICES`` when set, else
    ``torch.cuda.device_count()`` devices; [] on a CPU-only machine."""
    env = os.environ.get("CUDA_VISIBLE_DEVICES")
    if env is not None:
        return [d.strip() for d in env.split(",") if d.strip() and d.strip() != "-1"]
    try:
        import torch
    except ImportError:  # pragma: no cover - torch is a dependency
        return []
    return [str(i) for i in range(torch.cuda.device_count())] if torch.cuda.is_available() else []


def _print_now(message: str) -> None:
    """Progress lines reach a redirected log file as they happen (stdout is block-buffered)."""
    print(message, flush=True)


def _move_aside(run_dir: Path) -> Path:
    k = 1
    while (target := run_dir.with_name(f"{run_dir.name}.incomplete-{k}")).exists():
        k += 1
    run_dir.rename(target)
    return target


@dataclass
class CompareOutcome:
    spec: RunSpec
    run_dir: Path
    action: str  # "skipped" | "ran" | "resumed"
    returncode: int


def run_sweep(
    recipe: str,
    specs: Sequence[RunSpec],
    out_dir: Path,
    overrides: Sequence[str],
    *,
    runner: Runner = subprocess_runner,
    fail_fast: bool = False,
    jobs: int = 1,
    gpus: Sequence[str] | None = None,
    log: Callable[[str], None] | None = None,
    prebuild: bool | None = None,
) -> list[CompareOutcome]:
    """Run every spec not yet complete, ``jobs`` at a time. Returns one outcome per spec,
    in spec order. ``gpus`` (default: :func:`visible_gpus` when ``jobs`` > 1) pins job slot
    k to ``gpus[k % len(gpus)]``; without GPUs and with ``jobs`` > 1 each run gets one
    thread. ``fail_fast`` starts no new run after a failure. ``prebuild`` (default: when
    ``runner`` is :func:`subprocess_runner`) builds the runs' lab models once first
    (:func:`prebuild_models`)."""
    if jobs < 1:
        raise ValueError(f"--jobs must be >= 1, got {jobs}")
    log = log or _print_now
    out_dir.mkdir(parents=True, exist_ok=True)
    if gpus is None:
        gpus = visible_gpus() if jobs > 1 else []
    defaults = [f"{THREADS_KEY}=1", f"{PROGRESS_KEY}=false"] if jobs > 1 and not gpus else []
    if jobs > 1 and gpus:
        defaults = [f"{PROGRESS_KEY}=false"]
    want = requested_max_steps(overrides)
    outcomes: list[CompareOutcome | None] = [None] * len(specs)
    todo: list[tuple[int, RunSpec, Path, bool]] = []
    for i, spec in enumerate(specs):
        check_overrides(overrides, spec)
        run_dir = out_dir / spec.dirname
        state = run_state(run_dir, want)
        tag = f"[{i + 1}/{len(specs)}] {spec.dirname}"
        if state == "complete":
            log(f"{tag}: already complete, skipped")
            outcomes[i] = CompareOutcome(spec, run_dir, "skipped", 0)
            continue
        if state == "incomplete":
            moved = _move_aside(run_dir)
            log(f"{tag}: incomplete run without checkpoint moved to {moved}")
        todo.append((i, spec, run_dir, state == "resumable"))

    if prebuild is None:
        prebuild = runner is subprocess_runner
    if todo and prebuild:
        prebuild_models(recipe, [spec for _, spec, _, _ in todo], overrides, log)

    slots: queue.Queue[int] = queue.Queue()
    for k in range(jobs):
        slots.put(k)
    failed = False

    def one(i: int, spec: RunSpec, run_dir: Path, resume: bool) -> None:
        nonlocal failed
        if fail_fast and failed:
            return
        slot = slots.get()
        try:
            env: dict[str, str] = {}
            if gpus:
                env["CUDA_VISIBLE_DEVICES"] = gpus[slot % len(gpus)]
            elif jobs > 1:
                env.update(OMP_NUM_THREADS="1", MKL_NUM_THREADS="1")
            log_path = out_dir / LOG_SUBDIR / f"{spec.dirname}.log" if jobs > 1 else None
            # the arm's directory names the run in reports (curves, rows), not its preset
            named = [f"{RUN_NAME_KEY}={spec.dirname}", *defaults]
            argv = train_command(recipe, run_dir, spec, overrides, resume=resume, defaults=named)
            where = f" (log: {log_path})" if log_path else ""
            log(f"[{i + 1}/{len(specs)}] {spec.dirname}: "
                f"{'resuming' if resume else 'running'}{where}: {' '.join(argv)}")
            rc = int(runner(argv, run_dir, Launch(env, log_path)))
        finally:
            slots.put(slot)
        outcomes[i] = CompareOutcome(spec, run_dir, "resumed" if resume else "ran", rc)
        if rc != 0:
            failed = True
            log(f"[{i + 1}/{len(specs)}] {spec.dirname}: FAILED with exit status {rc}")

    if jobs == 1:
        for item in todo:
            one(*item)
    else:
        with ThreadPoolExecutor(max_workers=jobs) as pool:
            for future in [pool.submit(one, *item) for item in todo]:
                future.result()
    return [o for o in outcomes if o is not None]
