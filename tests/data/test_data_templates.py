"""render_prompt: template registry, chat templates, literal substitution."""

from __future__ import annotations

import pytest

from mgrpo.data.templates import (
    MATH_SUFFIX,
    TEMPLATES,
    encode_prompts,
    render_prompt,
    uses_chat_template,
)

CHAT_TEMPLATE = (
    "{% for m in messages %}<|{{ m['role'] }}|>{{ m['content'] }}<|end|>{% endfor %}"
    "{% if add_generation_prompt %}<|assistant|>{% endif %}"
)


@pytest.fixture(scope="module")
def char_tokenizer():
    from mgrpo.models.tokenizer import build_char_tokenizer

    return build_char_tokenizer()


@pytest.fixture()
def chat_tokenizer(char_tokenizer):
    from mgrpo.models.tokenizer import build_char_tokenizer

    tok = build_char_tokenizer()
    tok.chat_template = CHAT_TEMPLATE
    return tok


def test_math_suffix_is_the_papers() -> None:
    assert MATH_SUFFIX == "Please reason step by step, and put your final answer within \\boxed{}."
    assert TEMPLATES == ("default", "chat", "plain", "raw")


def test_plain_raw_and_default_without_chat_template(char_tokenizer) -> None:
    q = "What is $\\frac{1}{2}+{x}$?"
    assert render_prompt(q, char_tokenizer, "plain") == q + "\n" + MATH_SUFFIX
    assert render_prompt(q, char_tokenizer, "raw") == q
    assert render_prompt(q, char_tokenizer) == q + "\n" + MATH_SUFFIX  # default -> plain
    assert render_prompt(q, None, "plain", suffix=None) == q
    assert not uses_chat_template(char_tokenizer, "default")


def test_chat_template_with_generation_prompt(chat_tokenizer) -> None:
    text = render_prompt("2+2?", chat_tokenizer)
    assert text == f"<|user|>2+2?\n{MATH_SUFFIX}<|end|><|assistant|>"
    assert (
        render_prompt("2+2?", chat_tokenizer, "chat", suffix=None)
        == "<|user|>2+2?<|end|><|assistant|>"
    )
    assert uses_chat_template(chat_tokenizer, "default")
    assert render_prompt("2+2?", chat_tokenizer, "plain").startswith("2+2?\n")


def test_chat_requested_without_template_is_an_error(char_tokenizer) -> None:
    with pytest.raises(ValueError, match="no chat template"):
        render_prompt("q", char_tokenizer, "chat")


def test_custom_template_is_literal(char_tokenizer) -> None:
    # braces in the question must not be interpreted, nor a "{suffix}" inside the question
    q = "Solve {x}: \\boxed{?} {suffix}"
    out = render_prompt(q, char_tokenizer, "Q: {question}\nA ({suffix}):", suffix="S")
    assert out == "Q: Solve {x}: \\boxed{?} {suffix}\nA (S):"
    assert render_prompt("q", None, "<{question}>", suffix=None) == "<q>"


def test_unknown_template_lists_valid_names() -> None:
    with pytest.raises(
        ValueError, match="unknown template 'fancy'; valid names: default, chat, plain, raw"
    ):
        render_prompt("q", None, "fancy")
    with pytest.raises(ValueError, match="question must be a string"):
        render_prompt(3, None, "plain")  # type: ignore[arg-type]


def test_encode_prompts_round_trip(char_tokenizer) -> None:
    texts = [render_prompt("1+1?", char_tokenizer), "x"]
    ids = encode_prompts(texts, char_tokenizer, chat=False)
    assert len(ids) == 2 and all(isinstance(i, int) for i in ids[0])
    assert char_tokenizer.decode(ids[0], skip_special_tokens=True) == texts[0]
    assert encode_prompts([], char_tokenizer, chat=False) == []
