"""Tiny code-built tokenizer and models: round trips, ids, determinism, bad input."""

from __future__ import annotations

import pytest
import torch
from transformers import AutoTokenizer

from mgrpo.models.tiny import TINY_ARCHS, build_tiny_model
from mgrpo.models.tokenizer import DEFAULT_ALPHABET, build_char_tokenizer


def test_tokenizer_special_ids_and_roundtrip(tmp_path):
    tok = build_char_tokenizer()
    assert (tok.pad_token_id, tok.bos_token_id, tok.eos_token_id, tok.unk_token_id) == (0, 1, 2, 3)
    assert len(tok) == 4 + len(DEFAULT_ALPHABET)
    assert tok.chat_template is None
    text = "Solve: 12 + 30 = ?\n  \\boxed{42} ~`|"
    ids = tok.encode(text)
    assert len(ids) == len(text)  # one token per character, no BOS/EOS added
    assert tok.decode(ids) == text
    assert (
        tok.decode([tok.bos_token_id, *ids, tok.eos_token_id, 0], skip_special_tokens=True) == text
    )
    assert tok.encode("é") == [tok.unk_token_id]
    tok.save_pretrained(tmp_path)
    tok2 = AutoTokenizer.from_pretrained(tmp_path)
    assert tok2.encode(text) == ids and tok2.decode(ids) == text
    assert (tok2.pad_token_id, tok2.bos_token_id, tok2.eos_token_id) == (0, 1, 2)
    assert tok2.padding_side == "left"


def test_tokenizer_custom_alphabet_and_bad_input():
    tok = build_char_tokenizer("0123456789+-=\n ")
    assert len(tok) == 4 + 15
    assert tok.decode(tok.encode("1+2=3\n")) == "1+2=3\n"
    assert tok.convert_ids_to_tokens(4) == "0"
    with pytest.raises(ValueError, match="alphabet"):
        build_char_tokenizer("")


@pytest.mark.parametrize("arch", sorted(TINY_ARCHS))
def test_tiny_model_deterministic_and_configured(arch):
    tok = build_char_tokenizer()
    state = torch.random.get_rng_state()
    a = build_tiny_model(tok, arch=arch, seed=3)
    assert torch.equal(state, torch.random.get_rng_state())  # caller's RNG untouched
    b = build_tiny_model(tok, arch=arch, seed=3)
    c = build_tiny_model(tok, arch=arch, seed=4)
    for (na, pa), (_, pb) in zip(a.named_parameters(), b.named_parameters(), strict=True):
        assert torch.equal(pa, pb), na
    assert not torch.equal(a.lm_head.weight, c.lm_head.weight)
    cfg = a.config
    assert cfg.model_type == arch
    assert (cfg.pad_token_id, cfg.bos_token_id, cfg.eos_token_id) == (0, 1, 2)
    assert cfg.vocab_size == len(tok) and cfg.tie_word_embeddings is False
    assert a.lm_head.weight.data_ptr() != a.get_input_embeddings().weight.data_ptr()
    assert not a.training
    with torch.no_grad():
        out = a(torch.tensor([tok.encode("1+1=")])).logits
    assert out.shape == (1, 4, len(tok)) and torch.isfinite(out).all()


def test_tiny_model_dtype_and_bad_input():
    tok = build_char_tokenizer()
    m = build_tiny_model(tok, dtype=torch.bfloat16, hidden_size=32, num_heads=2, num_kv_heads=1)
    assert m.lm_head.weight.dtype == torch.bfloat16
    with pytest.raises(ValueError, match="arch"):
        build_tiny_model(tok, arch="gpt2")
    with pytest.raises(ValueError, match="num_kv_heads"):
        build_tiny_model(tok, num_heads=4, num_kv_heads=3)
    with pytest.raises(ValueError, match="hidden_size"):
        build_tiny_model(tok, hidden_size=0)


@pytest.mark.parametrize("arch", sorted(TINY_ARCHS))
def test_bf16_tiny_model_keeps_fp32_rope_tables_like_from_pretrained(arch, tmp_path):
    """A bf16 model built in code rotates with fp32 `inv_freq`, as `from_pretrained(dtype=
    bf16)` of the same weights does, so both give the same logits."""
    from transformers import AutoModelForCausalLM

    tok = build_char_tokenizer()
    model = build_tiny_model(tok, arch=arch, seed=0, dtype=torch.bfloat16)
    tables = {n: b.dtype for n, b in model.named_buffers() if n.endswith("inv_freq")}
    assert tables and set(tables.values()) == {torch.float32}
    assert {p.dtype for p in model.parameters()} == {torch.bfloat16}
    model.save_pretrained(tmp_path)
    loaded = AutoModelForCausalLM.from_pretrained(tmp_path, dtype=torch.bfloat16).eval()
    ids = torch.tensor([tok.encode("12+30=?")])
    with torch.no_grad():
        assert torch.equal(model(input_ids=ids).logits, loaded(input_ids=ids).logits)
