"""Text <-> token ids: the one source layout and the one detokenisation rule.

Training, evaluation, the server and the naive baseline all tokenise sources with ``encode_sources``
and turn generated ids into text with ``decode_text``, so a source is laid out the same way
wherever it goes.
"""

from __future__ import annotations

import functools
import logging
import re
from collections.abc import Sequence

log = logging.getLogger(__name__)


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


@functools.lru_cache(maxsize=16)
def byte_fallback_ids(tokenizer) -> frozenset[int]:
    """Ids of a byte-fallback tokenizer's byte tokens (``<0x41>``); empty for other tokenizers."""
    pattern = re.compile(r"<0x[0-9A-Fa-f]{2}>")
    return frozenset(i for piece, i in tokenizer.get_vocab().items() if pattern.fullmatch(piece))


class IncrementalDecoder:
    """The text of a growing list of generated ids, in pieces, for streaming.

    ``add(token)`` returns the text the new token completes: "" while a character spans several
    tokens (byte-fallback pieces, multi-byte characters) or for a token without text; ``finish()``
    returns what is left. The pieces concatenate to exactly ``decode_text(tokenizer, ids)``.

    Each step decodes a short window, not the whole output: the text of ``ids[prefix:]`` minus the
    text of ``ids[prefix:read]`` (the method of TGI's ``decode_token``), which keeps the spaces that
    word-start markers (SentencePiece's "▁") stand for. A window is only exact while the text is valid
    UTF-8: a byte-fallback decoder (``<0xNN>`` tokens) decodes a run of bytes together and turns all of
    an invalid run into U+FFFD, so a byte's text is not final until a token that is not a byte follows
    (the text waits), and once a replacement character shows up anywhere but at the end (there it is a
    character still incomplete, and the text waits), the row decodes its whole output at every step.
    """

    def __init__(self, tokenizer) -> None:
        self.tokenizer = tokenizer
        self.vocab = len(tokenizer)
        self.ids: list[int] = []  # generated ids that have text (see decode_text)
        self.text = ""  # the pieces returned so far
        self._prefix = 0
        self._read = 0
        self._whole = False  # decode the whole output from now on (see above)
        self._bytes = byte_fallback_ids(tokenizer)

    def _decode(self, ids: list[int]) -> str:
        return self.tokenizer.decode(ids, skip_special_tokens=True)

    def add(self, token: int) -> str:
        if token >= self.vocab:
            return ""
        self.ids.append(token)
        if token in self._bytes:  # its text depends on the bytes after it
            return ""
        if not self._whole:
            before = self._decode(self.ids[self._prefix : self._read])
            after = self._decode(self.ids[self._prefix :])
            if "\ufffd" not in after.rstrip("\ufffd"):
                if len(after) <= len(before) or after.endswith("\ufffd"):
                    return ""
                piece = after[len(before) :]
                self._prefix, self._read = self._read, len(self.ids)
                self.text += piece
                return piece
            self._whole = True
        full = self._decode(self.ids)
        if full.endswith("\ufffd") or not full.startswith(self.text):
            return ""
        piece, self.text = full[len(self.text) :], full
        return piece

    def finish(self) -> str:
        """The rest of the text (a character the last tokens left incomplete, if any)."""
        full = decode_text(self.tokenizer, self.ids)
        if not full.startswith(self.text):  # cannot happen with the rule above; never send text twice
            log.warning("streamed text %r is not a prefix of the decoded text %r", self.text, full)
            return ""
        rest = full[len(self.text) :]
        self.text = full
        return rest
