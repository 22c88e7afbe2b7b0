"""Build (or reuse) the lab model: a tiny Llama trained from scratch by SFT on easy arithmetic.

`build_lab_model(config)` returns the path of a normal Hugging Face model directory
(model + character tokenizer, safetensors) cached under `~/.cache/mgrpo/lab/<hash>/`
(`MGRPO_CACHE_DIR` overrides the root). A valid cache entry is reused (verification is a
sha256 per file, well under a second); a missing or corrupt one is rebuilt into a temporary
directory and renamed into place.

The build is deterministic for `config.seed` on a given torch and transformers build, thread
count and CPU kernel path (`torch.backends.cpu.get_cpu_capability()`, e.g. AVX2 vs AVX512),
all recorded under the manifest's "versions" (`build_identity`); on another machine or library
version the same config may train a different model (the cache key is the config alone, so the
model's sha256 in the manifest is what identifies a build; reusing an entry built elsewhere
prints a note). Pinning the kernel path (`mgrpo.kernel_path`: ATEN_CPU_CAPABILITY=avx2,
MKL_CBWR=AVX2, MKL_ENABLE_INSTRUCTIONS=AVX2, which `mgrpo lab` and `mgrpo train` on a lab model
set by default) makes builds agree across x86-64 CPUs with AVX2 or better:
1. model = `build_tiny_model` (random init from the seed) over `build_char_tokenizer(alphabet)`;
2. SFT: `sft_steps` AdamW steps, each on `batch_size` fresh problems from the easy mixture
   (never an RL-task question, see `lab.config`), prompt = template with the question, no
   BOS, target = worked solution + EOS, cross-entropy on target tokens only;
3. measurement on held-out val problems of the hard task: mean sample accuracy and maj@G
   at `measure_temperature`, printed and stored in the manifest.
Not in the paper: the paper starts from Qwen3-4B-Base; this world exists so label-free
RL can be demonstrated on a CPU in minutes.
"""

from __future__ import annotations

import math
import os
import platform
import random
import shutil
import sys
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import torch

from mgrpo import __version__
from mgrpo.core.schedule import warmup_cosine
from mgrpo.data.arithmetic import make_problems, worked_solution
from mgrpo.data.datasets import PromptRecord
from mgrpo.kernel_path import KERNEL_ENV
from mgrpo.lab.cache import (
    CorruptCacheError,
    install_entry,
    lab_cache_root,
    new_temp_dir,
    read_manifest,
    remove_entry,
    verify_entry,
    write_manifest,
)
from mgrpo.lab.config import (
    DEFAULT_LAB_CONFIG,
    RL_POOL_BUCKETS,
    SPLITS,
    VAL_BUCKETS,
    LabConfig,
    question_bucket,
)
from mgrpo.lab.measure import measure_accuracy
from mgrpo.lab.noise import slipped_solution
from mgrpo.models.tiny import build_tiny_model
from mgrpo.models.tokenizer import build_char_tokenizer
from mgrpo.progress import progress as progress_display

IGNORE_INDEX = -100  # label value cross-entropy skips (prompt and padding positions)
SFT_DATA_SEED_OFFSET = 1  # SFT problems use seed + offset (+ component index)
MEASURE_SEED_OFFSET = 2  # val problems for the build-time measurement
NOISE_SEED_OFFSET = 3  # the answer-noise RNG of the SFT targets
THREADS_ENV = "MGRPO_LAB_THREADS"  # overrides the torch thread count of the build


def build_threads() -> int:
    """Torch threads for the build: `$MGRPO_LAB_THREADS`, else 1.

    One thread by default so the cached model is bit-identical on every machine for a seed
    (float reductions split over a different number of threads round differently), and
    because for a ~0.6M-parameter model a single core is close to the fastest anyway:
    OpenMP threads that wait at every barrier made 2 threads ~5x slower than 1 on a busy
    2-core box. Set MGRPO_LAB_THREADS to trade reproducibility for speed.
    """
    env = os.environ.get(THREADS_ENV)
    if not env:
        return 1
    try:
        value = int(env)
    except ValueError as err:
        raise ValueError(f"${THREADS_ENV} must be a positive int, got {env!r}") from err
    if value < 1:
        raise ValueError(f"${THREADS_ENV} must be a positive int, got {env!r}")
    return value


def in_rl_pool(question: str, config: LabConfig) -> bool:
    """True if `question` belongs to the held-out RL task pool (train or val split)."""
    return config.task.contains(question) and question_bucket(question) < RL_POOL_BUCKETS


def lab_task_problems(
    split: str = "train",
    n: int = 256,
    seed: int = 0,
    config: LabConfig | None = None,
) -> list[PromptRecord]:
    """`n` distinct problems of the lab's hard RL task, from the held-out `split`.

    "val" draws questions whose bucket is in [0, VAL_BUCKETS), "train" those in
    [VAL_BUCKETS, RL_POOL_BUCKETS): the splits are disjoint for every `n` and `seed`, and
    neither ever appears in the SFT data. Answers are exact integers (for diagnostics and
    validation only; label-free presets never reward with them).
    """
    if split not in SPLITS:
        raise ValueError(f"split must be one of {SPLITS}, got {split!r}")
    config = config or DEFAULT_LAB_CONFIG
    low, high = (0, VAL_BUCKETS) if split == "val" else (VAL_BUCKETS, RL_POOL_BUCKETS)
    return make_problems(
        n, seed=seed, unique=True, accept=lambda q: low <= question_bucket(q) < high,
        id_prefix=f"lab-{split}", **config.task.kwargs(),
    )


def sft_problems(config: LabConfig, n: int) -> list[PromptRecord]:
    """`n` SFT problems from the easy mixture (component counts ∝ weights), shuffled, seeded."""
    counts = [int(math.floor(n * w)) for w, _ in config.sft_mix]
    counts[0] += n - sum(counts)  # remainder to the first (largest by convention) component
    records: list[PromptRecord] = []
    for index, ((_, spec), count) in enumerate(zip(config.sft_mix, counts)):
        records += make_problems(
            count, seed=config.seed + SFT_DATA_SEED_OFFSET + index,
            accept=lambda q: not in_rl_pool(q, config), id_prefix=f"lab-sft{index}",
            **spec.kwargs(),
        )
    random.Random(config.seed).shuffle(records)
    return records


def sft_targets(records: list[PromptRecord], config: LabConfig) -> list[str]:
    """The SFT target text of each record: its worked solution, slipped with probability
    `config.answer_noise` (`mgrpo.lab.noise`; one seeded RNG over the records in order, so
    a noise-free config draws nothing and its targets are the clean solutions)."""
    if not config.answer_noise:
        return [worked_solution(r) for r in records]
    rng = random.Random(config.seed + NOISE_SEED_OFFSET)
    return [slipped_solution(r, rng, config.noise_max) if rng.random() < config.answer_noise
            else worked_solution(r) for r in records]


def _encode(records: list[PromptRecord], tokenizer: Any, config: LabConfig) -> list[tuple[list[int], list[int]]]:
    """(prompt ids, target ids + EOS) per record; no BOS, as the trainer renders prompts."""
    prompts = tokenizer([config.template.replace("{question}", r.question) for r in records],
                        add_special_tokens=False)["input_ids"]
    targets = tokenizer(sft_targets(records, config), add_special_tokens=False)["input_ids"]
    return [(p, t + [tokenizer.eos_token_id]) for p, t in zip(prompts, targets)]


def _collate(pairs: list[tuple[list[int], list[int]]], pad_id: int) -> dict[str, torch.Tensor]:
    """Right-padded input_ids/attention_mask/labels; labels are IGNORE_INDEX off the targets."""
    width = max(len(p) + len(t) for p, t in pairs)
    input_ids = torch.full((len(pairs), width), pad_id, dtype=torch.long)  # (B, L)
    attention_mask = torch.zeros((len(pairs), width), dtype=torch.long)  # (B, L)
    labels = torch.full((len(pairs), width), IGNORE_INDEX, dtype=torch.long)  # (B, L)
    for row, (prompt, target) in enumerate(pairs):
        seq = prompt + target
        input_ids[row, : len(seq)] = torch.tensor(seq)
        attention_mask[row, : len(seq)] = 1
        labels[row, len(prompt) : len(seq)] = torch.tensor(target)
    return {"input_ids": input_ids, "attention_mask": attention_mask, "labels": labels}


def lr_factor(step: int, total: int, warmup_fraction: float) -> float:
    """Linear warm-up over ceil(warmup_fraction * total) steps (at least one), then cosine
    from 1 to 0 (`mgrpo.core.schedule.warmup_cosine`)."""
    return warmup_cosine(step, max(1, math.ceil(warmup_fraction * total)), total)


def train_lab_model(config: LabConfig, *, progress: bool = True) -> tuple[Any, Any, dict[str, Any]]:
    """Build the tokenizer and model and run SFT; returns (model, tokenizer, stats).

    Runs inside `torch.random.fork_rng`, so the caller's global RNG is untouched.
    """

    tokenizer = build_char_tokenizer(config.alphabet)
    model = build_tiny_model(
        tokenizer, arch="llama", hidden_size=config.hidden_size, num_layers=config.num_layers,
        num_heads=config.num_heads, num_kv_heads=config.num_kv_heads,
        intermediate_size=config.intermediate_size,
        max_position_embeddings=config.max_position_embeddings, seed=config.seed,
    )
    data = _encode(sft_problems(config, config.sft_steps * config.batch_size), tokenizer, config)
    longest = max(len(p) + len(t) for p, t in data)
    if longest > config.max_position_embeddings:
        raise ValueError(f"SFT sequences reach {longest} tokens > max_position_embeddings="
                         f"{config.max_position_embeddings}")
    optimizer = torch.optim.AdamW(model.parameters(), lr=config.lr, betas=config.betas,
                                  weight_decay=config.weight_decay)
    model.train()
    losses: list[float] = []
    start = time.perf_counter()
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(config.seed)
        bar = progress_display(config.sft_steps, desc="lab SFT", unit="step", enabled=progress)
        for step in range(config.sft_steps):
            batch = _collate(data[step * config.batch_size : (step + 1) * config.batch_size],
                             tokenizer.pad_token_id)
            for group in optimizer.param_groups:
                group["lr"] = config.lr * lr_factor(step, config.sft_steps, config.warmup_fraction)
            loss = model(**batch).loss
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), config.grad_clip)
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)
            losses.append(loss.item())
            if step % 10 == 0 or step == config.sft_steps - 1:
                bar.set_postfix({"loss": f"{losses[-1]:.3f}"})
            bar.update(1)
        bar.close()
    model.eval()
    tail = losses[-min(len(losses), 20) :]
    stats = {"sft_seconds": time.perf_counter() - start, "final_loss": sum(tail) / len(tail),
             "first_loss": losses[0], "sft_examples": len(data),
             "parameters": sum(p.numel() for p in model.parameters())}
    return model, tokenizer, stats


def _build_into(directory: Path, config: LabConfig, progress: bool) -> dict[str, Any]:
    """Train, save and measure into `directory`; returns the manifest payload."""
    start = time.perf_counter()
    threads_before = torch.get_num_threads()
    torch.set_num_threads(build_threads())
    try:
        model, tokenizer, stats = train_lab_model(config, progress=progress)
        model.save_pretrained(directory, safe_serialization=True)
        tokenizer.save_pretrained(directory)
        metrics: dict[str, Any] = {}
        if config.measure_problems:
            measure_start = time.perf_counter()
            records = lab_task_problems("val", config.measure_problems,
                                        seed=config.seed + MEASURE_SEED_OFFSET, config=config)
            metrics = measure_accuracy(
                model, tokenizer, records, template=config.template,
                samples=config.measure_samples, temperature=config.measure_temperature,
                max_new_tokens=config.max_new_tokens, seed=config.seed,
            )
            metrics["seconds"] = time.perf_counter() - measure_start
            metrics["split"] = "val"
        threads = torch.get_num_threads()
    finally:
        torch.set_num_threads(threads_before)

    return {
        "config": config.to_dict(),
        "template": config.template,
        "task": config.task.describe(),
        "sft_mix": [[w, spec.describe()] for w, spec in config.sft_mix],
        "metrics": metrics,
        "sft": stats,
        "build_seconds": time.perf_counter() - start,
        "threads": threads,
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "versions": {"mgrpo": __version__, "python": platform.python_version(),
                     **build_identity()},
    }


def build_identity() -> dict[str, Any]:
    """What a build depends on beyond its config, for this process.

    torch and transformers versions, `platform.machine()`, torch's CPU kernel path
    (`cpu_capability`) and, under "kernel_env", whichever of `KERNEL_ENV` are set (they pin the
    kernel path: with ATEN_CPU_CAPABILITY=avx2 and MKL_CBWR=AVX2 an AVX512 machine reproduced
    an AVX2 machine's build bit for bit, docs/lab-study.md "Two builds of the same world").
    """
    import transformers  # lazy, start-up: transformers takes seconds to import

    return {"torch": torch.__version__, "transformers": transformers.__version__,
            "cpu_capability": torch.backends.cpu.get_cpu_capability(),
            "machine": platform.machine(),
            "kernel_env": {k: os.environ[k] for k in KERNEL_ENV if k in os.environ}}


def build_mismatch(manifest: dict[str, Any]) -> str | None:
    """A note naming how this process differs from the one that built `manifest`, or None.

    Compares torch, transformers, machine and cpu_capability (the kernel environment only
    through the capability it selects; MKL's switches leave no other trace). A manifest
    without "versions" (or a key) is not a difference. The cached model stays valid: what
    differs is that this process would build another model for the same config and that its
    runs take another kernel path, so they are not bit-comparable with the build machine's.
    """
    built = manifest.get("versions") or {}
    here = build_identity()
    keys = ("torch", "transformers", "machine", "cpu_capability")
    diffs = [f"{k} {built[k]} there, {here[k]} here" for k in keys
             if k in built and built[k] != here[k]]
    if not diffs:
        return None
    hint = ""
    if "cpu_capability" in built and built["cpu_capability"] != here["cpu_capability"]:
        capability = str(built["cpu_capability"])
        env = dict(built.get("kernel_env") or {})
        env.setdefault("ATEN_CPU_CAPABILITY", capability.lower())
        if capability in ("AVX2", "AVX512"):  # MKL's reproducibility mode of the same ISA
            env.setdefault("MKL_CBWR", capability)
        hint = ("; to take the build's kernel path set "
                + " ".join(f"{k}={v}" for k, v in sorted(env.items())))
    return ("the cached model was built under another setup (" + "; ".join(diffs) + "): it is "
            "reused as is, but this process would build another model for the config and its "
            "runs are not bit-comparable with the build's" + hint)


def measure_world(
    path: str | os.PathLike,
    config: LabConfig,
    *,
    problems: int = 128,
    samples: int = 16,
    temperature: float = 1.1,
    seed: int = 0,
) -> dict[str, Any]:
    """`measure_accuracy` of the built model at `path` on `problems` val problems of
    `config.task` (drawn with `seed + MEASURE_SEED_OFFSET`, as the build's measurement),
    `samples` samples each at `temperature`, one torch thread; returns its dict."""
    # lazy, start-up: transformers takes seconds to import
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(str(path))
    if tokenizer.pad_token_id is None:
        tokenizer.pad_token = tokenizer.eos_token
    model = AutoModelForCausalLM.from_pretrained(str(path))
    records = lab_task_problems("val", problems, seed=seed + MEASURE_SEED_OFFSET, config=config)
    threads_before = torch.get_num_threads()
    torch.set_num_threads(build_threads())
    try:
        return measure_accuracy(model, tokenizer, records, template=config.template,
                                samples=samples, temperature=temperature,
                                max_new_tokens=config.max_new_tokens, seed=seed)
    finally:
        torch.set_num_threads(threads_before)


def format_metrics(manifest: dict[str, Any]) -> str:
    """One-line human summary of a manifest's measurement."""
    m = manifest.get("metrics") or {}
    if not m:
        return "no measurement stored"
    return (f"hard task ({manifest.get('task')}), {m['n_problems']} val problems x {m['samples']} "
            f"samples at T={m['temperature']}: sample accuracy {m['sample_accuracy']:.1%}, "
            f"maj@{m['samples']} {m['maj_accuracy']:.1%} (gap {m['maj_minus_sample']:+.1%}), "
            f"answer rate {m['answer_rate']:.1%}")


def lab_model_path(config: LabConfig | None = None, cache_dir: str | os.PathLike | None = None) -> Path:
    """Where the entry for `config` lives (it may not exist yet)."""
    config = config or DEFAULT_LAB_CONFIG
    return lab_cache_root(cache_dir) / config.config_hash()


def lab_info(config: LabConfig | None = None, cache_dir: str | os.PathLike | None = None) -> dict[str, Any] | None:
    """The manifest of the cached entry for `config`, or None if absent (not verified)."""
    path = lab_model_path(config, cache_dir)
    if not path.exists():
        return None
    try:
        return read_manifest(path)
    except CorruptCacheError:
        return None


def build_lab_model(
    config: LabConfig | None = None,
    cache_dir: str | os.PathLike | None = None,
    progress: bool = True,
    *,
    force: bool = False,
) -> Path:
    """Path of the lab model directory for `config` (default: the demo's), built if needed.

    Reuses a verified cache entry unless `force` (with a note on stderr when it was built
    under another torch, transformers or CPU kernel path, see `build_mismatch`); a corrupt
    entry is reported on stderr and rebuilt. `cache_dir` replaces the lab cache root
    (`<mgrpo cache>/lab`). With `progress`, shows a tqdm bar and prints the measurement.
    """
    config = config or DEFAULT_LAB_CONFIG
    config_hash = config.config_hash()
    root = lab_cache_root(cache_dir)
    final = root / config_hash
    if final.exists() and not force:
        try:
            manifest = verify_entry(final, config_hash)
        except CorruptCacheError as err:
            print(f"mgrpo lab: cache entry is corrupt, rebuilding ({err})", file=sys.stderr)
        else:
            note = build_mismatch(manifest)
            if note:
                print(f"mgrpo lab: {final}: {note}", file=sys.stderr)
            return final
    temp = new_temp_dir(root, config_hash)
    try:
        payload = _build_into(temp, config, progress)
        write_manifest(temp, config_hash, payload)
        if force and final.exists():
            remove_entry(final)
        install_entry(temp, final, config_hash)
    except BaseException:
        shutil.rmtree(temp, ignore_errors=True)
        raise
    if progress:
        manifest = read_manifest(final)
        print(f"mgrpo lab: built {final} in {payload['build_seconds']:.1f}s "
              f"({payload['threads']} threads)\nmgrpo lab: {format_metrics(manifest)}",
              file=sys.stderr)
    return final
