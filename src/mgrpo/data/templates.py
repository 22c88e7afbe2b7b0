"""Prompt templates: turn a question into the text the model sees.

Registry `TEMPLATES` (names): "default" (the tokenizer's chat template when it has one,
else "plain"), "chat" (the chat template, required), "plain" ("{question}\\n{suffix}"),
"raw" (the question only). Any other string containing "{question}" (and optionally
"{suffix}") is a custom template; placeholders are substituted literally (no
`str.format`), so LaTeX braces in questions are safe.

The suffix defaults to the paper's math instruction `MATH_SUFFIX`; pass `suffix=None`
to drop it. The chat path wraps "question\\nsuffix" as one user turn and calls
`tokenizer.apply_chat_template(..., add_generation_prompt=True, **chat_template_kwargs)`,
so the text ends where the assistant's answer starts (Qwen3 "thinking" templates are used
as shipped; `chat_template_kwargs={"enable_thinking": False}` switches thinking off).

`system_prompt`: with a chat template, a `{"role": "system"}` turn before the user turn;
with any other template, the text followed by a blank line before the rendered prompt.

Chat-message prompts (`render_record` of a record whose `meta["messages"]` holds a list of
`{role, content}` turns, see `mgrpo.data.datasets`): the turns go to the chat template as
they are, the suffix is appended to the last user turn, and `system_prompt` is put first
unless the messages begin with their own system turn. They need a chat template.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from mgrpo.config.sections import MATH_SUFFIX  # the paper's math instruction, one definition

CHOICE_SUFFIX = (
    "Please reason step by step, and put the letter of the correct option "
    "within \\boxed{} (for example \\boxed{A})."
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


def _apply_chat(tokenizer: Any, messages: list[dict[str, str]],
                chat_template_kwargs: Mapping[str, Any] | None) -> str:
    kwargs = dict(chat_template_kwargs or {})
    return tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True, **kwargs)


def _no_chat_template_error(template: str) -> ValueError:
    return ValueError(
        f"template={template!r} but the tokenizer has no chat template; "
        f"use one of {', '.join(TEMPLATES[2:])} or a custom string with {QUESTION_SLOT}"
    )


def render_prompt(
    question: str,
    tokenizer: Any = None,
    template: str = "default",
    suffix: str | None = MATH_SUFFIX,
    *,
    system_prompt: str | None = None,
    chat_template_kwargs: Mapping[str, Any] | None = None,
) -> str:
    """Render one prompt (see the module docstring for the templates and the system prompt).

    Raises ValueError for an unknown template name, a custom template without
    "{question}", or template="chat" with a tokenizer that has no chat template.
    """
    if not isinstance(question, str):
        raise ValueError(f"question must be a string, got {type(question).__name__}")
    if template == "default":
        template = "chat" if has_chat_template(tokenizer) else "plain"
    if template == "chat":
        if not has_chat_template(tokenizer):
            raise _no_chat_template_error(template)
        return render_messages([{"role": "user", "content": question}], tokenizer, template,
                               suffix, system_prompt=system_prompt,
                               chat_template_kwargs=chat_template_kwargs)
    if template == "plain":
        text = _join(question, suffix)
    elif template == "raw":
        text = question
    elif QUESTION_SLOT not in template:
        raise ValueError(
            f"unknown template {template!r}; valid names: {', '.join(TEMPLATES)}, "
            f"or a custom string containing {QUESTION_SLOT} (and optionally {SUFFIX_SLOT})"
        )
    else:  # substitute the suffix first so a question containing "{suffix}" is left untouched
        text = template.replace(SUFFIX_SLOT, suffix or "").replace(QUESTION_SLOT, question)
    return f"{system_prompt}\n\n{text}" if system_prompt else text


def render_messages(
    messages: Sequence[Mapping[str, str]],
    tokenizer: Any,
    template: str = "default",
    suffix: str | None = MATH_SUFFIX,
    *,
    system_prompt: str | None = None,
    chat_template_kwargs: Mapping[str, Any] | None = None,
) -> str:
    """Render a chat-message prompt (see the module docstring). Raises ValueError when the
    template is not a chat template (the messages have no plain-text form)."""
    if not uses_chat_template(tokenizer, template):
        if template in ("default", "chat"):
            raise ValueError(
                "the prompt is a list of chat messages but the tokenizer has no chat template; "
                "give the prompt as text, or use a model whose tokenizer has one"
            )
        raise ValueError(
            f"the prompt is a list of chat messages, which needs a chat template, not "
            f"template={template!r} (use default or chat)"
        )
    turns = [{"role": m["role"], "content": m["content"]} for m in messages]
    last_user = max(i for i, m in enumerate(turns) if m["role"] == "user")
    turns[last_user]["content"] = _join(turns[last_user]["content"], suffix)
    if system_prompt and turns[0]["role"] != "system":
        turns.insert(0, {"role": "system", "content": system_prompt})
    return _apply_chat(tokenizer, turns, chat_template_kwargs)


def render_record(
    record: Any,
    tokenizer: Any = None,
    template: str = "default",
    suffix: str | None = MATH_SUFFIX,
    *,
    system_prompt: str | None = None,
    chat_template_kwargs: Mapping[str, Any] | None = None,
) -> str:
    """Render a `PromptRecord`: its chat messages when `meta["messages"]` holds them, else its
    question (`render_prompt`)."""
    messages = record.meta.get("messages") if record.meta else None
    kwargs = dict(system_prompt=system_prompt, chat_template_kwargs=chat_template_kwargs)
    if messages:
        return render_messages(messages, tokenizer, template, suffix, **kwargs)
    return render_prompt(record.question, tokenizer, template, suffix, **kwargs)


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
