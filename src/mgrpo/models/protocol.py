"""`Tokenizer`: what mgrpo needs of a tokenizer (a Hugging Face one, or the character tokenizer).

A structural type: any object with these members is one, `transformers.PreTrainedTokenizerBase`
included. mgrpo encodes prompts (`__call__` / `apply_chat_template` through
`data/templates.py`), decodes rollouts (`batch_decode`), pads and stops with the special ids,
and saves the tokenizer into each checkpoint.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

__all__ = ["Tokenizer"]


@runtime_checkable
class Tokenizer(Protocol):
    """The tokenizer interface mgrpo uses."""

    pad_token_id: int | None
    eos_token_id: int | None
    bos_token_id: int | None
    eos_token: str | None
    chat_template: str | None

    def __call__(self, text: str | list[str], **kwargs: Any) -> Any:
        """Encode text (`input_ids` of each string)."""

    def batch_decode(self, sequences: Sequence[Sequence[int]], **kwargs: Any) -> list[str]:
        """Decode token ids, one string per sequence."""

    def apply_chat_template(self, conversation: list[dict[str, str]], **kwargs: Any) -> Any:
        """Render (and optionally tokenize) chat messages with the tokenizer's template."""

    def save_pretrained(self, save_directory: str | Path, **kwargs: Any) -> Any:
        """Write the tokenizer's files into a directory (checkpoints)."""
