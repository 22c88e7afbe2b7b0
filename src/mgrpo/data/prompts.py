"""Prompt templates: turn a question into the text the model sees.

Registry `TEMPLATES` (names): "default" (the tokenizer's chat template when it has one,
else "plain"), "chat" (the chat template, required), "plain" ("{question}\\n{suffix}"),
"raw" (the question only). Any other string containing "{question}" (and optionally
"{suffix}") is a custom template; placeholders are substituted literally (no
`str.format`), so LaTeX braces in questions are safe.

The suffix defaults to the paper's math instruction `MATH_SUFFIX`; pass `suffix=None`
to drop it. The chat path wraps "question\\nsuffix" as one user turn and calls
`tokenizer.apply_chat_template(..., add_generation_prompt=True)`, so the text ends
where the assistant's answer starts (Qwen3 "thinking" templates are used as shipped).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

MATH_SUFFIX = "Please reason step by step, and put your final answer within \\boxed{}."
CHOICE_SUFFIX = (
    "Please reason step by step, and put the letter of the correct option "
    "within \\boxed{} (for example \\boxed{A})."
)
CODE_SUFFIX = (
    "Write your solution as a complete Python program or function in a single ```python code block."
)
TEMPLATES = ("default", "chat", "plain", "raw")
QUESTION_SLOT = "{question}"
SUFFIX_SLOT = "{suffix}"


def has_chat_template(tokenizer: Any) -> bool:
    return bool(getattr(tokenizer, "chat_template", None)) and hasattr(
        tokenizer, "apply_chat_template"
    )


def _join(question: str, suffix: str | None) -> str:
    return question if not suffix else f"{question}\n{suffix}"


def render_prompt(
    question: str,
    tokenizer: Any = None,
    template: str = "default",
    suffix: str | None = MATH_SUFFIX,
) -> str:
    """Render one prompt (see the module docstring for the templates).

    Raises ValueError for an unknown template name, a custom template without
    "{question}", or template="chat" with a tokenizer that has no chat template.
    """
    if not isinstance(question, str):
        raise ValueError(f"question must be a string, got {type(question).__name__}")
    if template == "default":
        template = "chat" if has_chat_template(tokenizer) else "plain"
    if template == "chat":
        if not has_chat_template(tokenizer):
            raise ValueError(
                "template='chat' but the tokenizer has no chat template; "
                f"use one of {', '.join(TEMPLATES[2:])} or a custom string with {QUESTION_SLOT}"
            )
        messages = [{"role": "user", "content": _join(question, suffix)}]
        return tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
    if template == "plain":
        return _join(question, suffix)
    if template == "raw":
        return question
    if QUESTION_SLOT not in template:
        raise ValueError(
            f"unknown template {template!r}; valid names: {', '.join(TEMPLATES)}, "
            f"or a custom string containing {QUESTION_SLOT} (and optionally {SUFFIX_SLOT})"
        )
    # Substitute the suffix first so a question containing "{suffix}" is left untouched.
    return template.replace(SUFFIX_SLOT, suffix or "").replace(QUESTION_SLOT, question)


def uses_chat_template(tokenizer: Any, template: str) -> bool:
    """True when `render_prompt(..., template)` goes through the chat template."""
    return template == "chat" or (template == "default" and has_chat_template(tokenizer))


def encode_prompts(texts: Sequence[str], tokenizer: Any, *, chat: bool) -> list[list[int]]:
    """Token ids of rendered prompts.

    A chat-rendered text already holds its special tokens (BOS, role markers), so it
    is encoded with add_special_tokens=False; plain text gets the tokenizer's usual
    special tokens (e.g. Llama's BOS).
    """
    if not texts:
        return []
    encoded = tokenizer(list(texts), add_special_tokens=not chat)["input_ids"]
    return [list(ids) for ids in encoded]
