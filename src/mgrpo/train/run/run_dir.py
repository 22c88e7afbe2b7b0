"""The run directory: what `mgrpo train -o DIR` writes, every file's name, and setting it up.

This module is the one description of the run directory (`LAYOUT`, printed in
docs/design.md §6, a test keeps the two equal) and the one home of its file names (the
constants below; writers and readers, `mgrpo report` and `mgrpo compare` included, import
them). `prepare_run_dir` sets a directory up, or checks that `--resume` may continue it.
Light on purpose (no torch): the report reads these names too.
"""

from __future__ import annotations

import re
import sys
from pathlib import Path
from typing import Any

from mgrpo.config import Config, ConfigError, config_from_dict, config_to_dict, dump_config
from mgrpo.files import write_text_atomic
from mgrpo.train.run.errors import TrainingError

__all__ = [
    "CHECKPOINTS_DIR", "CONFIG_FILE", "EVAL_GLOB", "HF_WEIGHTS_FILE", "LAYOUT", "LORA_FILE",
    "MANIFEST_FILE", "MASTER_FILE", "METRICS_FILE", "MOMENTUM_FILE", "OPTIMIZER_FILE",
    "OPTIMIZER_META_FILE", "RESUME_MUTABLE", "RNG_FILE", "SAMPLES_FILE", "SHARDED_DIR",
    "STATE_FILE", "STEP_DIR", "TENSORBOARD_DIR", "TOKENIZER_FILE", "TRACKERS_FILE",
    "config_diff", "prepare_run_dir", "step_dir_name",
]

# ------------------------------------------------------------------------ the run directory
CONFIG_FILE = "config.yaml"  # the fully resolved config, written before the first step
METRICS_FILE = "metrics.jsonl"  # one JSON object per step (train/logs/metrics_writer.py)
SAMPLES_FILE = "samples.jsonl"  # every K-th step's prompts and rollouts (train/logs/samples.py)
TRACKERS_FILE = "trackers.json"  # W&B / MLflow run ids, so a resume continues those runs
TENSORBOARD_DIR = "tensorboard"  # the metrics as TensorBoard scalars
CHECKPOINTS_DIR = "checkpoints"  # one directory per checkpoint, `step-N`
EVAL_GLOB = "eval*/results.json"  # what `mgrpo eval -o DIR/eval...` writes into a run
STEP_DIR = re.compile(r"^step-(\d+)$")  # checkpoints/step-N/

# ------------------------------------------------------- a checkpoint, checkpoints/step-N/
HF_WEIGHTS_FILE = "model.safetensors"  # the HF directory's weights (save_pretrained)
TOKENIZER_FILE = "tokenizer.json"  # the tokenizer (save_pretrained)
MASTER_FILE = "master.safetensors"  # fp32 master weights (mixed precision)
LORA_FILE = "lora.safetensors"  # the trained adapters (LoRA)
MOMENTUM_FILE = "momentum.safetensors"  # the momentum model's fp32 EMA master
OPTIMIZER_FILE = "optimizer.safetensors"  # AdamW's tensors
OPTIMIZER_META_FILE = "optimizer.json"  # AdamW's param groups and scalars
STATE_FILE = "trainer_state.json"  # step, scheduler, python RNG, counters, summary, precision
RNG_FILE = "rng.safetensors"  # the torch RNG state
SHARDED_DIR = "sharded"  # torch.distributed.checkpoint shards (FSDP)
MANIFEST_FILE = "manifest.json"  # size + sha256 of every file above, written last

LAYOUT = f"""\
| path | what it holds |
|---|---|
| `{CONFIG_FILE}` | the fully resolved config (nested mapping), written before the first step; `--resume` compares the new config with it (only `RESUME_MUTABLE` keys may differ) |
| `{METRICS_FILE}` | one JSON object per step: `step` plus scalar metrics (`val/*` only on validation steps, `alarm/reason` a string); appended and fsynced per step; a partial last line (a kill mid-write) is ignored; on resume the lines after the restored step are dropped with an atomic rewrite |
| `{SAMPLES_FILE}` | with `trainer.log_samples_every=K`: every K-th step's prompts, pseudo-labels and pools (text, answer, reward, entropy, kept) |
| `{TENSORBOARD_DIR}/` | the same scalars for TensorBoard (`trainer.report_to`) |
| `{TRACKERS_FILE}` | W&B / MLflow run ids, so `--resume` continues those runs |
| `{CHECKPOINTS_DIR}/step-N/` | a checkpoint, written into a temp directory and renamed into place (complete or absent), the newest `trainer.keep_last` kept |
| `step-N/` HF files (`config.json`, `{HF_WEIGHTS_FILE}`, `{TOKENIZER_FILE}`, ...) | the policy as an HF model directory: full weights; mixed precision and FSDP the bf16 copy; LoRA the merged weights or a peft adapter directory (`model.lora.export`) |
| `step-N/{MASTER_FILE}` | mixed precision: the fp32 master weights |
| `step-N/{LORA_FILE}` | LoRA: the trained adapters |
| `step-N/{MOMENTUM_FILE}` | the momentum model's fp32 EMA master (LoRA: of the adapters); not with FSDP |
| `step-N/{OPTIMIZER_FILE}`, `{OPTIMIZER_META_FILE}` | AdamW's state (no pickle); not with FSDP |
| `step-N/{SHARDED_DIR}/` | FSDP: policy, AdamW and EMA master as `torch.distributed.checkpoint` shards |
| `step-N/{STATE_FILE}`, `{RNG_FILE}` | step, scheduler, python and torch RNG, bad-step count, the before / after validation summary, the resolved precision |
| `step-N/{MANIFEST_FILE}` | size and SHA-256 of every file of the checkpoint, written last; a resume uses the newest checkpoint that verifies |
| `eval*/results.json`, `eval*/samples/<bench>.jsonl` | written by `mgrpo eval -o DIR/eval...` when checkpoints are evaluated into the run |
"""

# Config keys allowed to differ between the original run and a `--resume`.
RESUME_MUTABLE = ("trainer.max_steps", "trainer.save_every", "trainer.eval_every",
                  "trainer.progress", "trainer.keep_last", "trainer.threads", "trainer.stop_after",
                  "distributed.timeout_s", "distributed.backend", "distributed.fsdp",
                  "trainer.report_to")


def step_dir_name(step: int) -> str:
    """`step-N`, the checkpoint directory of step N."""
    return f"step-{step}"


def config_diff(a: dict[str, Any], b: dict[str, Any], prefix: str = "",
                defaults: dict[str, Any] | None = None) -> list[str]:
    """Dotted keys whose values differ. A key missing from `a` (a run saved before the key
    existed) does not count when `b` holds its default (`defaults`, same nesting)."""
    out = []
    for key in sorted(set(a) | set(b)):
        dotted = f"{prefix}{key}"
        va, vb = a.get(key), b.get(key)
        default = (defaults or {}).get(key)
        if isinstance(va, dict) and isinstance(vb, dict):
            out += config_diff(va, vb, dotted + ".", default if isinstance(default, dict) else None)
        elif key not in a and defaults is not None and key in defaults and vb == default:
            continue
        elif va != vb:
            out.append(dotted)
    return out


def prepare_run_dir(cfg: Config, run_dir: Path, resume: bool) -> None:
    """Set up `run_dir` (its `config.yaml`), or check that `--resume` may continue it.

    Raises TrainingError when a resume's config differs outside `RESUME_MUTABLE`, when
    `run_dir` is not a run directory, or when a new run would overwrite an existing one."""
    config_path = run_dir / CONFIG_FILE
    if resume and not config_path.exists():
        if run_dir.exists() and any(p.name != TENSORBOARD_DIR for p in run_dir.iterdir()):
            raise TrainingError(f"--resume: {run_dir} has no {CONFIG_FILE} (not a run directory)")
        # killed before the run directory was set up: nothing to resume, start fresh
        print(f"mgrpo: --resume: {run_dir} holds no run yet; starting a new one", file=sys.stderr)
        resume = False
    if resume:
        # lazy, start-up: only (de)serialising a config needs yaml
        import yaml

        saved = yaml.safe_load(config_path.read_text(encoding="utf-8"))
        try:  # keys added since the run started take their defaults
            saved = config_to_dict(config_from_dict(saved))
        except (ConfigError, TypeError):
            pass  # compared as written: the differing keys are named below
        diff = config_diff(saved, config_to_dict(cfg), defaults=config_to_dict(Config()))
        changed = [k for k in diff if k not in RESUME_MUTABLE]
        if changed:
            raise TrainingError(
                f"--resume: the config differs from {config_path} in {', '.join(changed)}; "
                f"only {', '.join(RESUME_MUTABLE)} may change on resume"
            )
    elif (run_dir / METRICS_FILE).exists() or (run_dir / CHECKPOINTS_DIR).exists():
        raise TrainingError(
            f"{run_dir} already holds a run; pass --resume to continue it or choose another -o"
        )
    run_dir.mkdir(parents=True, exist_ok=True)
    write_text_atomic(config_path, dump_config(cfg))
