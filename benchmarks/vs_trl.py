"""Step time of mgrpo (presets m-grpo and srt) vs Hugging Face TRL's GRPOTrainer, on CPU.

Both systems train the SAME randomly initialised Llama (built with `mgrpo.models.tiny`,
saved to a temporary directory that both load), with the same character tokenizer
(`mgrpo.models.tokenizer`), the same prompts ("What is 23+58? Answer: ", seeded, as in the
peer script `shared/peers/trl_grpo_step.py`), 4 prompts per step, G completions per prompt,
32 new tokens, temperature 1.0, fp32, beta/kl_coef 0.005 (a reference model runs), lr 1e-6,
one optimizer step per generation round and the same torch thread count. Shapes:

    tiny   hidden 64,  2 layers, 4 heads (2 KV), MLP 128   (peer `tiny`)
    small  hidden 256, 4 layers, 8 heads (4 KV), MLP 688   (peer `small`)

Interleaving (A B A B ...): TRL drives its own loop, so mgrpo runs inside a TRL callback:
after each TRL optimizer step (its time already recorded) one m-grpo step and one srt step
run, so machine noise hits all three alike. The first `--warmup` steps of each system are
dropped; medians are reported, plus the ratio mgrpo / TRL and mgrpo's per-stage medians.
TRL is optional (`pip install mgrpo[bench]`); without it only mgrpo is timed.

What each system's step covers: TRL from `on_step_begin` to `on_step_end` (generation,
reward, reference log-probs, forward/backward, AdamW); mgrpo the `train_step` call
(generation of policy AND momentum rollouts, entropies, IQR filter, answer extraction,
vote, rewards, logp_old/logp_ref passes, forward/backward, AdamW, EMA). mgrpo's whole step
is one micro-batch (`trainer.micro_batch_size` = 4 G), like TRL's
`per_device_train_batch_size` = 4 G here.

    python benchmarks/vs_trl.py                                   # tiny+small, G 8 and 16
    python benchmarks/vs_trl.py --shapes tiny --groups 8 --steps 8

Prints one table per (shape, G), then ONE JSON object as the last line.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import statistics
import sys
import tempfile
import time
import warnings
from pathlib import Path
from typing import Any

import torch

PROMPTS_PER_STEP = 4
MAX_NEW_TOKENS = 32
KL_COEF = 0.005
LR = 1e-6
TEMPERATURE = 1.0
SHAPES: dict[str, dict[str, int]] = {
    "tiny": dict(hidden_size=64, num_layers=2, num_heads=4, num_kv_heads=2, intermediate_size=128),
    "small": dict(hidden_size=256, num_layers=4, num_heads=8, num_kv_heads=4, intermediate_size=688),
}
PRESETS = ("m-grpo", "srt")
STAGES = ("generate", "vote", "reward", "logprobs", "train", "ema")
TARGET_RATIO = 0.7  # target: m-grpo step <= 0.7x TRL's GRPO step


# ---------------------------------------------------------------------------- machine load


def cpu_snapshot() -> tuple[float | None, float, float]:
    """(machine busy CPU s, this process's CPU s, wall s); busy is None off Linux."""
    busy = None
    try:
        with open("/proc/stat") as f:  # cpu user nice system idle iowait irq softirq steal
            ticks = [int(x) for x in f.readline().split()[1:9]]
        busy = (sum(ticks) - ticks[3] - ticks[4]) / os.sysconf("SC_CLK_TCK")
    except (OSError, ValueError):
        pass
    return busy, time.process_time(), time.perf_counter()


def other_procs_cores(start: tuple, end: tuple) -> float | None:
    """Average cores kept busy by OTHER processes between two snapshots (0 = idle machine)."""
    if start[0] is None or end[0] is None:
        return None
    others = (end[0] - start[0]) - (end[1] - start[1])
    return round(max(others, 0.0) / (end[2] - start[2]), 2)


def load_average() -> list[float] | None:
    try:
        return [round(x, 2) for x in os.getloadavg()]
    except OSError:
        return None


# --------------------------------------------------------------------------------- inputs


def make_prompts(n: int, seed: int) -> list[str]:
    """The peer script's seeded arithmetic prompts."""
    rng = random.Random(seed)
    out = []
    for _ in range(n):
        a, b, op = rng.randint(0, 99), rng.randint(0, 99), rng.choice("+-*")
        out.append(f"What is {a}{op}{b}? Answer: ")
    return out


def build_model_dir(shape: str, root: Path, seed: int) -> tuple[Path, int]:
    """Save the shared random Llama + char tokenizer; return (directory, n_params)."""
    from mgrpo.models.tiny import build_tiny_model
    from mgrpo.models.tokenizer import build_char_tokenizer

    tokenizer = build_char_tokenizer()
    model = build_tiny_model(tokenizer, seed=seed, max_position_embeddings=256, **SHAPES[shape])
    path = root / f"model-{shape}"
    model.save_pretrained(path)
    tokenizer.save_pretrained(path)
    return path, sum(p.numel() for p in model.parameters())


def write_prompt_file(prompts: list[str], root: Path) -> Path:
    path = root / "prompts.jsonl"
    with open(path, "w", encoding="utf-8") as fh:
        for p in prompts:
            fh.write(json.dumps({"question": p}) + "\n")
    return path


# --------------------------------------------------------------------------------- mgrpo


class MgrpoRunner:
    """One mgrpo preset on the shared model; `step()` runs and times one train_step."""

    def __init__(self, preset: str, model_dir: Path, data: Path, G: int, threads: int,
                 max_steps: int, root: Path, seed: int) -> None:
        from mgrpo.config import apply_overrides, config_from_dict, load_recipe
        from mgrpo.train.run.trainer import build_run

        overrides = [
            f"seed={seed}", f"algorithm.preset={preset}", f"algorithm.rollouts={G}",
            f"algorithm.kl_coef={KL_COEF}", f"model.name={model_dir}", "model.dtype=float32",
            "model.device=cpu", "model.engine=fast", f"data.train={data}", "data.template=raw",
            "data.answer_field=null", "data.answer_kind=number", "data.max_prompt_length=256",
            f"generation.temperature={TEMPERATURE}", f"generation.max_new_tokens={MAX_NEW_TOKENS}",
            f"optim.lr={LR}", "optim.warmup_ratio=0.0", f"trainer.prompts_per_step={PROMPTS_PER_STEP}",
            f"trainer.micro_batch_size={PROMPTS_PER_STEP * G}", f"trainer.max_steps={max_steps}",
            f"trainer.threads={threads}", "trainer.progress=false", "validation.data=null",
        ]
        self.cfg = config_from_dict(apply_overrides(load_recipe("tiny"), overrides))
        self.run = build_run(self.cfg, root / f"run-{preset}")
        self.preset = preset
        self.step_s: list[float] = []
        self.cpu_s: list[float] = []
        self.stages: list[dict[str, float]] = []
        self.lengths: list[float] = []

    def step(self) -> None:
        from mgrpo.train.step import StepBatch, train_step

        i = len(self.step_s) + 1
        t0, c0 = time.perf_counter(), time.process_time()
        records, ids = self.run.train_set.batch(i, self.cfg.trainer.prompts_per_step)
        m = train_step(self.run.models, StepBatch(ids, [r.answer for r in records]), self.cfg,
                       self.run.spec, i)
        self.step_s.append(time.perf_counter() - t0)
        self.cpu_s.append(time.process_time() - c0)
        self.stages.append({s: m.get(f"time/{s}", 0.0) for s in STAGES})
        self.lengths.append(m["response/length_mean"])

    def close(self) -> None:
        self.run.models.checker.close()


# ----------------------------------------------------------------------------------- TRL


def trl_available() -> bool:
    try:
        import trl  # noqa: F401
    except ImportError:
        return False
    return True


def run_trl_interleaved(model_dir: Path, prompts: list[str], G: int, steps: int, seed: int,
                        root: Path, between_steps) -> tuple[list[float], list[float]]:
    """Train TRL GRPO for `steps` steps; call `between_steps()` after each (untimed).
    Returns (wall s, process CPU s) per step."""
    import dataclasses
    from collections import Counter

    from datasets import Dataset
    from transformers import TrainerCallback
    from transformers.trainer_callback import PrinterCallback
    from trl import GRPOConfig, GRPOTrainer

    def last_int(text: str) -> int | None:
        import re

        found = re.findall(r"(?<!\d)-?\d+", text)
        return int(found[-1]) if found else None

    def majority_vote_reward(prompts, completions, **kwargs):  # as in the peer script
        rewards = []
        for start in range(0, len(completions), G):
            answers = [last_int(c) for c in completions[start:start + G]]
            votes = Counter(a for a in answers if a is not None)
            majority = votes.most_common(1)[0][0] if votes else None
            rewards += [1.0 if a is not None and a == majority else 0.0 for a in answers]
        return rewards

    step_s: list[float] = []
    cpu_s: list[float] = []

    class Interleave(TrainerCallback):
        t0 = c0 = 0.0

        def on_step_begin(self, args, state, control, **kwargs):
            self.t0, self.c0 = time.perf_counter(), time.process_time()

        def on_step_end(self, args, state, control, **kwargs):
            step_s.append(time.perf_counter() - self.t0)
            cpu_s.append(time.process_time() - self.c0)
            between_steps()

    ckpt_flag = ("activation_checkpointing" if "activation_checkpointing" in
                 {f.name for f in dataclasses.fields(GRPOConfig)} else "gradient_checkpointing")
    config = GRPOConfig(
        output_dir=str(root / "trl-out"), use_cpu=True, bf16=False, **{ckpt_flag: False},
        seed=seed, data_seed=seed, per_device_train_batch_size=PROMPTS_PER_STEP * G,
        gradient_accumulation_steps=1, num_generations=G, num_iterations=1,
        max_completion_length=MAX_NEW_TOKENS, temperature=TEMPERATURE, beta=KL_COEF,
        learning_rate=LR, max_steps=steps, logging_steps=1, save_strategy="no",
        report_to="none", disable_tqdm=True, log_level="warning", dataloader_num_workers=0,
    )
    trainer = GRPOTrainer(
        model=str(model_dir), reward_funcs=majority_vote_reward, args=config,
        train_dataset=Dataset.from_dict({"prompt": prompts}), callbacks=[Interleave()],
    )
    trainer.remove_callback(PrinterCallback)
    if trainer.ref_model is None:
        raise RuntimeError("expected TRL to build a reference model (beta > 0)")
    trainer.train()
    return step_s, cpu_s


# ---------------------------------------------------------------------------------- main


def run_case(shape: str, G: int, args: argparse.Namespace, use_trl: bool) -> dict[str, Any]:
    total = args.steps + args.warmup
    with tempfile.TemporaryDirectory(prefix="mgrpo-vs-trl-") as tmp:
        root = Path(tmp)
        model_dir, n_params = build_model_dir(shape, root, args.seed)
        prompts = make_prompts(max(256, PROMPTS_PER_STEP * total), args.seed)
        data = write_prompt_file(prompts, root)
        runners = [MgrpoRunner(p, model_dir, data, G, args.threads, total, root, args.seed)
                   for p in args.presets]
        torch.set_num_threads(args.threads)  # build_run set it too; TRL must not change it

        def mgrpo_steps() -> None:
            for r in runners:
                r.step()

        snap = cpu_snapshot()
        trl_steps: list[float] = []
        trl_cpu: list[float] = []
        if use_trl:
            trl_steps, trl_cpu = run_trl_interleaved(model_dir, prompts, G, total, args.seed, root, mgrpo_steps)
        else:
            for _ in range(total):
                mgrpo_steps()
        others = other_procs_cores(snap, cpu_snapshot())
        for r in runners:
            r.close()

    def med(xs: list[float]) -> float:
        return round(statistics.median(xs[args.warmup:]), 4)

    out: dict[str, Any] = {"shape": shape, "G": G, "n_params": n_params,
                           "threads": torch.get_num_threads(), "other_procs_cores": others,
                           "loadavg_after": load_average(), "median_step_s": {},
                           "median_cpu_s": {}, "stages_s": {},
                           "mean_len": {}}
    if trl_steps:
        out["median_step_s"]["trl-grpo"] = med(trl_steps)
        out["median_cpu_s"]["trl-grpo"] = med(trl_cpu)
    for r in runners:
        out["median_step_s"][r.preset] = med(r.step_s)
        out["median_cpu_s"][r.preset] = med(r.cpu_s)
        out["stages_s"][r.preset] = {
            s: round(statistics.median(st[s] for st in r.stages[args.warmup:]), 4) for s in STAGES
        }
        out["mean_len"][r.preset] = round(statistics.mean(r.lengths[args.warmup:]), 2)
    if trl_steps:
        out["ratio_vs_trl"] = {p: round(out["median_step_s"][p] / out["median_step_s"]["trl-grpo"], 3)
                               for p in args.presets}
    if set(PRESETS) <= set(args.presets):
        out["mgrpo_over_srt"] = round(out["median_step_s"]["m-grpo"] / out["median_step_s"]["srt"], 3)
    return out


def print_case(c: dict[str, Any]) -> None:
    print(f"\n== shape={c['shape']} ({c['n_params'] / 1e6:.3f} M params) G={c['G']} "
          f"threads={c['threads']} other_procs_cores={c['other_procs_cores']} "
          f"loadavg={c['loadavg_after']}")
    for name, s in c["median_step_s"].items():
        ratio = c.get("ratio_vs_trl", {}).get(name)
        extra = f"  x{ratio:.3f} of TRL" if ratio is not None else ""
        cpu = c["median_cpu_s"][name]
        print(f"  {name:<9} median step {s:8.4f} s (process CPU {cpu:8.4f} s){extra}")
    print("  mgrpo stages (median s): " + "  ".join(f"{s:>9}" for s in STAGES))
    for preset, st in c["stages_s"].items():
        print(f"  {preset:<24}" + "  ".join(f"{st[s]:9.4f}" for s in STAGES))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--shapes", default="tiny,small", help="comma list of: " + ", ".join(SHAPES))
    parser.add_argument("--groups", default="8,16", help="comma list of G values")
    parser.add_argument("--presets", default=",".join(PRESETS), help="mgrpo presets to time")
    parser.add_argument("--steps", type=int, default=6, help="timed steps per system")
    parser.add_argument("--warmup", type=int, default=1, help="dropped steps per system")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--no-trl", action="store_true", help="time mgrpo only")
    args = parser.parse_args(argv)
    shapes = [s for s in args.shapes.split(",") if s]
    bad = [s for s in shapes if s not in SHAPES]
    if bad:
        parser.error(f"unknown shape(s) {bad}; valid: {', '.join(SHAPES)}")
    groups = [int(g) for g in args.groups.split(",") if g]
    args.presets = [p for p in args.presets.split(",") if p]
    if any(p not in PRESETS for p in args.presets):
        parser.error(f"--presets must be among {', '.join(PRESETS)}")
    if args.steps < 1 or args.warmup < 0:
        parser.error("--steps must be >= 1 and --warmup >= 0")
    use_trl = not args.no_trl and trl_available()
    if not args.no_trl and not use_trl:
        print("vs_trl: TRL is not installed (pip install 'mgrpo[bench]'); timing mgrpo only",
              file=sys.stderr)
    warnings.filterwarnings("ignore")
    import transformers

    torch.set_num_threads(args.threads)
    cases = []
    for shape in shapes:
        for G in groups:
            case = run_case(shape, G, args, use_trl)
            print_case(case)
            cases.append(case)
    versions = {"torch": torch.__version__, "transformers": transformers.__version__}
    if use_trl:
        import trl

        versions["trl"] = trl.__version__
    verdict = {}
    for c in cases:
        if "ratio_vs_trl" in c and "m-grpo" in c["ratio_vs_trl"]:
            verdict[f"{c['shape']}/G{c['G']}"] = c["ratio_vs_trl"]["m-grpo"] <= TARGET_RATIO
    print(f"\nm-grpo <= {TARGET_RATIO}x TRL: {verdict or 'n/a (no TRL)'}")
    result = {
        "benchmark": "vs_trl", "versions": versions, "python": platform.python_version(),
        "machine": platform.machine(), "cpus": os.cpu_count(),
        "cpu_model": _cpu_model(), "prompts_per_step": PROMPTS_PER_STEP,
        "max_new_tokens": MAX_NEW_TOKENS, "dtype": "float32", "steps": args.steps,
        "warmup": args.warmup, "target_ratio": TARGET_RATIO, "meets_target": verdict,
        "cases": cases,
    }
    print(json.dumps(result))
    return 0


def _cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor()


if __name__ == "__main__":
    sys.exit(main())
