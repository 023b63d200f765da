"""Text <-> token ids: the one source layout and the one detokenisation rule.

Training, evaluation, the server and the naive baseline all tokenise sources with ``encode_sources``
and turn generated ids into text with ``decode_text``, so a source is laid out the same way
wherever it goes.
"""

from __future__ import annotations

from collections.abc import Sequence


def encode_sources(tokenizer, texts: Sequence[str], encoder_decoder: bool) -> list[list[int]]:
    """Token ids of each source text. T5 tokenizers end with EOS; decoder-only bases get an EOS
    appended as the separator between source and output (training uses the same layout)."""
    ids = tokenizer(list(texts), add_special_tokens=True)["input_ids"]
    if not encoder_decoder:
        return [list(row) + [tokenizer.eos_token_id] for row in ids]
    return [list(row) for row in ids]


def decode_text(tokenizer, token_ids: Sequence[int]) -> str:
    """Detokenize generated ids. Embedding tables are often padded past the tokenizer (T5: 32,128
    rows, 32,100 tokens); ids without a token have no text, so they are left out of it."""
    size = len(tokenizer)
    return tokenizer.decode([t for t in token_ids if t < size], skip_special_tokens=True)
