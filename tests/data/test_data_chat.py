"""Chat-message prompts, data.system_prompt, data.chat_template_kwargs, data.split /
validation.split and list values in overrides."""

from __future__ import annotations

import json

import pytest

from mgrpo.config import ConfigError, resolve_config
from mgrpo.data.datasets import DatasetError, PromptRecord, load_prompt_dataset
from mgrpo.data.fetched import is_present
from mgrpo.data.templates import render_prompt, render_record
from mgrpo.train.run.prompt_set import build_prompt_set, load_records

CHAT_TEMPLATE = (
    "{% for m in messages %}<|{{ m['role'] }}|>{{ m['content'] }}<|end|>{% endfor %}"
    "{% if add_generation_prompt %}<|assistant|>"
    "{% if enable_thinking is defined and not enable_thinking %}<think></think>{% endif %}{% endif %}"
)


def needs(name: str) -> pytest.MarkDecorator:
    """Skip unless the fetched set `name` is on this machine (tests never fetch it)."""
    return pytest.mark.skipif(not is_present(name), reason=f"{name} is not in $MGRPO_DATA_DIR")


@pytest.fixture()
def chat_tokenizer():
    from mgrpo.models.tokenizer import build_char_tokenizer

    tok = build_char_tokenizer()
    tok.chat_template = CHAT_TEMPLATE
    return tok


@pytest.fixture()
def plain_tokenizer():
    from mgrpo.models.tokenizer import build_char_tokenizer

    return build_char_tokenizer()


def _jsonl(path, rows):
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return path


MESSAGES = [{"role": "system", "content": "Be brief."},
            {"role": "user", "content": "1+1?"},
            {"role": "assistant", "content": "2"},
            {"role": "user", "content": "2+2?"}]


def test_message_prompts_load_and_render_through_the_chat_template(tmp_path, chat_tokenizer):
    path = _jsonl(tmp_path / "chat.jsonl", [{"prompt": MESSAGES, "answer": "4"},
                                            {"prompt": "3+3?", "answer": "6"}])
    records = load_prompt_dataset(path, prompt_field="prompt", answer_field="answer")
    assert records[0].question == "2+2?" and records[0].meta["messages"] == MESSAGES
    assert "messages" not in records[1].meta
    text = render_record(records[0], chat_tokenizer, "default", "Box it.")
    assert text == ("<|system|>Be brief.<|end|><|user|>1+1?<|end|><|assistant|>2<|end|>"
                    "<|user|>2+2?\nBox it.<|end|><|assistant|>")
    # the row's own system turn wins over data.system_prompt
    assert render_record(records[0], chat_tokenizer, "chat", None, system_prompt="Other.") == (
        text.replace("\nBox it.", ""))


def test_system_prompt_and_chat_template_kwargs(chat_tokenizer, plain_tokenizer):
    text = render_prompt("2+2?", chat_tokenizer, "default", None, system_prompt="Think.",
                         chat_template_kwargs={"enable_thinking": False})
    assert text == "<|system|>Think.<|end|><|user|>2+2?<|end|><|assistant|><think></think>"
    assert render_prompt("2+2?", chat_tokenizer, "chat", None).endswith("<|assistant|>")
    assert render_prompt("2+2?", plain_tokenizer, "plain", "S", system_prompt="Sys") == "Sys\n\n2+2?\nS"
    record = PromptRecord("a", "q", "1", meta={"messages": [{"role": "user", "content": "q"}]})
    with pytest.raises(ValueError, match="chat messages but the tokenizer has no chat template"):
        render_record(record, plain_tokenizer, "default")
    with pytest.raises(ValueError, match="needs a chat template, not template='plain'"):
        render_record(record, chat_tokenizer, "plain")


def test_training_prompt_set_uses_system_prompt_and_kwargs(tmp_path, chat_tokenizer):
    path = _jsonl(tmp_path / "chat.jsonl", [{"prompt": [{"role": "user", "content": "5+5?"}], "answer": "10"}])
    cfg = resolve_config("tiny", [f"data.train={path}", "data.prompt_field=prompt", "data.suffix=null",
                                  "data.template=default", "data.max_prompt_length=512",
                                  "data.system_prompt=Be exact.",
                                  "data.chat_template_kwargs={enable_thinking: false}"])
    records = load_records(cfg.data, cfg.data.train, split="train", seed=0)
    prompt_set = build_prompt_set(records, chat_tokenizer, cfg.data, seed=0)
    decoded = chat_tokenizer.decode(prompt_set.prompt_ids[0])
    assert decoded == "<|system|>Be exact.<|end|><|user|>5+5?<|end|><|assistant|><think></think>"


@pytest.mark.parametrize(("prompt", "words"), [
    ([], ["empty list of messages"]),
    ([{"role": "user"}], ["message 0", "'role' and 'content'"]),
    ([{"role": "robot", "content": "x"}], ["message 0", "'robot'", "one of"]),
    ([{"role": "user", "content": ""}], ["message 0", "non-empty string"]),
    ([{"role": "system", "content": "x"}], ["no user message"]),
    ({"role": "user", "content": "x"}, ["string or a list of chat messages", "dict"]),
])
def test_bad_message_prompts_name_the_line(tmp_path, prompt, words):
    path = _jsonl(tmp_path / "bad.jsonl", [{"prompt": "ok"}, {"prompt": prompt}])
    with pytest.raises(DatasetError) as info:
        load_prompt_dataset(path, prompt_field="prompt")
    message = str(info.value)
    assert f"{path}:2" in message
    for word in words:
        assert word in message, message


@needs("gsm8k_train")
def test_data_split_and_validation_split_pick_the_dataset_split():
    cfg = resolve_config("tiny", ["data.train=gsm8k", "data.split=test", "data.limit=3"])
    test_rows = load_records(cfg.data, "gsm8k", split="train", seed=0)
    default_rows = load_records(resolve_config("tiny", ["data.train=gsm8k", "data.limit=3"]).data,
                                "gsm8k", split="train", seed=0)
    assert test_rows != default_rows
    assert test_rows == load_prompt_dataset("gsm8k_test", limit=3)
    assert default_rows == load_prompt_dataset("gsm8k_train", limit=3)
    # validation: "test" unless validation.split says otherwise
    assert load_records(cfg.data, "gsm8k", split="val", seed=0) == test_rows
    assert load_records(cfg.data, "gsm8k", split="val", seed=0, dataset_split="train") == default_rows
    assert resolve_config("tiny", ["validation.split=train"]).validation.split == "train"
    with pytest.raises(ConfigError, match="data.split: must name a split"):
        resolve_config("tiny", ["data.split= "])


def test_list_values_in_overrides():
    cfg = resolve_config("tiny", ["model.lora.target_modules=[q_proj,v_proj]",
                                  "trainer.report_to=[tensorboard,mlflow]"])
    assert cfg.model.lora.target_modules == ["q_proj", "v_proj"]
    assert cfg.trainer.report_to == ["tensorboard", "mlflow"]
    # the comma string still works, and [] turns every tracker off
    assert resolve_config("tiny", ["model.lora.target_modules=q_proj,v_proj"]).model.lora.target_modules == [
        "q_proj", "v_proj"]
    assert resolve_config("tiny", ["trainer.report_to=[]"]).trainer.report_to == []
    assert resolve_config("tiny", ["data.chat_template_kwargs.enable_thinking=false"]).data.chat_template_kwargs == {
        "enable_thinking": False}


@pytest.mark.parametrize(("override", "words"), [
    ("model.lora.target_modules=[q_proj,v_proj", ["model.lora.target_modules", "invalid list"]),
    ("model.lora.target_modules=[q_proj,[v]]", ["model.lora.target_modules: item 1", "expected a string"]),
    ("model.lora.target_modules=[]", ["model.lora.target_modules", "must name >= 1 module"]),
    ("trainer.report_to=[comet]", ["trainer.report_to", "'comet' is not one of"]),
    ("trainer.report_to=[wandb,wandb]", ["trainer.report_to", "twice"]),
    ("trainer.report_to={a: 1}", ["trainer.report_to", "expected a list"]),
    ("data.chat_template_kwargs=[1]", ["data.chat_template_kwargs", "expected a mapping"]),
    ("data.chat_template_kwargs={a: 1", ["data.chat_template_kwargs", "invalid list or mapping"]),
])
def test_bad_list_values_give_one_clear_error(override, words):
    with pytest.raises(ConfigError) as info:
        resolve_config("tiny", [override])
    message = str(info.value)
    assert "\n" not in message
    for word in words:
        assert word in message, message


def test_lora_target_modules_list_reaches_peft():
    pytest.importorskip("peft", reason="peft not installed (pip install 'mgrpo[lora]')")
    from mgrpo.train.layout.lora import target_modules

    cfg = resolve_config("tiny", ["model.lora.r=4", "model.lora.target_modules=[q_proj,v_proj]"])
    assert target_modules(cfg.model.lora) == ["q_proj", "v_proj"]
    cfg = resolve_config("tiny", ["model.lora.r=4", "model.lora.target_modules=[all-linear]"])
    assert target_modules(cfg.model.lora) == "all-linear"
