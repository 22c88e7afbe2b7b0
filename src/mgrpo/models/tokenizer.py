"""Character-level tokenizer built in code (no download), for tests, CI and the lab world.

`build_char_tokenizer` returns a `transformers.PreTrainedTokenizerFast` backed by a
`tokenizers` WordLevel model whose vocabulary is the special tokens followed by one
token per character of the alphabet. Every character is its own "word" (the
pre-tokenizer splits on the empty pattern, isolating each character), so
`decode(encode(s)) == s` for any string made of alphabet characters, spaces and
newlines included. Characters outside the alphabet map to `<unk>`.

Special tokens and ids (fixed, relied upon by tests and tiny models):
`<pad>` = 0, `<bos>` = 1, `<eos>` = 2, `<unk>` = 3. No BOS/EOS is added by `encode`;
there is no chat template (prompt rendering falls back to the plain template).
Padding side is "left" (decoder-only generation); it survives save/load.
"""

from __future__ import annotations

import string

from tokenizers import Regex, Tokenizer, decoders, models, pre_tokenizers
from transformers import PreTrainedTokenizerFast

PAD_TOKEN, BOS_TOKEN, EOS_TOKEN, UNK_TOKEN = "<pad>", "<bos>", "<eos>", "<unk>"
SPECIAL_TOKENS = (PAD_TOKEN, BOS_TOKEN, EOS_TOKEN, UNK_TOKEN)  # ids 0, 1, 2, 3
# printable ASCII minus the whitespace controls (\t\r\x0b\x0c), plus newline
DEFAULT_ALPHABET = "".join(c for c in string.printable if c not in "\t\r\x0b\x0c\n") + "\n"


def build_char_tokenizer(alphabet: str | None = None) -> PreTrainedTokenizerFast:
    """Build a character-level tokenizer over `alphabet` (default: printable ASCII + "\\n").

    Vocabulary: the 4 special tokens (ids 0..3), then each distinct alphabet character in
    first-occurrence order (ids 4..); duplicates are ignored. Raises ValueError if
    `alphabet` is empty or not a string.
    """
    if alphabet is None:
        alphabet = DEFAULT_ALPHABET
    if not isinstance(alphabet, str) or not alphabet:
        raise ValueError(f"alphabet must be a non-empty string, got {alphabet!r}")
    chars = list(dict.fromkeys(alphabet))  # dedupe, keep order
    vocab = {tok: i for i, tok in enumerate(SPECIAL_TOKENS)}
    for ch in chars:
        vocab[ch] = len(vocab)  # single characters never collide with "<pad>" etc.
    backend = Tokenizer(models.WordLevel(vocab=vocab, unk_token=UNK_TOKEN))
    # isolate every character (including spaces and newlines) as its own pre-token
    backend.pre_tokenizer = pre_tokenizers.Split(Regex("."), behavior="isolated")
    # WordLevel has no decoder of its own: join tokens with no separator
    backend.decoder = decoders.Fuse()
    tok = PreTrainedTokenizerFast(
        tokenizer_object=backend,
        pad_token=PAD_TOKEN,
        bos_token=BOS_TOKEN,
        eos_token=EOS_TOKEN,
        unk_token=UNK_TOKEN,
        clean_up_tokenization_spaces=False,
        padding_side="left",  # decoder-only generation pads on the left
    )
    return tok
