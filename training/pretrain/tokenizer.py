"""Train our own T5-style tokenizer offline: byte-fallback BPE saved as a `tokenizer.json` folder.

Why not SentencePiece's `spiece.model`: transformers 5.x's `T5Tokenizer` ignores SentencePiece's byte
fallback, so characters outside the vocabulary (E2E's `[`, `]`, `£`) become `<unk>`. Instead we train a
`tokenizers` BPE model and give it byte fallback: a character outside the learned alphabet is encoded
as its UTF-8 bytes (`<0x..>` tokens), so every string survives encode -> decode. BPE rather than
Unigram because BPE reaches the `<0x..>` tokens only through the fallback, never by matching the
literal text "<0x41>" (a Unigram vocabulary would match it and decode it as "A").

Layout of the vocabulary (T5 conventions): `<pad>` 0, `</s>` 1, `<unk>` 2, the 256 byte tokens, the
learned pieces, then the sentinels with `<extra_id_0>` as the last id (T5 counts them down from the
end). Encoding appends `</s>` (a post-processor in tokenizer.json, and `add_eos_token` in the config
for transformers versions that rebuild the post-processor). The folder loads with
`transformers.AutoTokenizer.from_pretrained(folder)` as a `PreTrainedTokenizerFast`.

Limits of the round trip: text must not contain the special-token strings (`</s>`, `<extra_id_0>`, ...),
which are matched as special tokens and dropped by `skip_special_tokens`, nor U+2581 "▁", which decodes
as a space, nor start with a space (the data is whitespace-normalised; repeated spaces, tabs and
newlines inside a text do survive).

`inputtune pretrain` trains one as its first step, or only that with `--tokenizer-only`.
"""

from __future__ import annotations

import collections
import json
import time
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

from tokenizers import AddedToken, Regex, Tokenizer, decoders, models, pre_tokenizers, processors, trainers

from training.data import TASKS, load_task, normalize_whitespace
from training.errors import DataFormatError, PresetError
from training.pretrain.books import load_books
from training.pretrain.config import PretrainTokenizerConfig

PAD, EOS, UNK = "<pad>", "</s>", "<unk>"
SPECIAL_TOKENS = (PAD, EOS, UNK)  # ids 0, 1, 2 as in T5
BYTE_TOKENS = tuple(f"<0x{i:02X}>" for i in range(256))
SPACE = "▁"  # SentencePiece's word-boundary mark

# Kept in the alphabet however rare they are in the training corpus: printable ASCII, the letters of
# French, German, Czech and Romanian (both the comma-below ș ț of the news sets and the cedilla ş ţ of
# Europarl), and common typographic punctuation. Other rare characters go through the byte fallback.
REQUIRED_CHARACTERS = (
    "".join(chr(c) for c in range(0x21, 0x7F))
    + "àâæçéèêëîïôœùûüÿÀÂÆÇÉÈÊËÎÏÔŒÙÛÜŸ"  # French
    + "äöüßÄÖÜ"  # German
    + "áčďéěíňóřšťúůýžÁČĎÉĚÍŇÓŘŠŤÚŮÝŽ"  # Czech
    + "ăâîșțşţĂÂÎȘȚŞŢ"  # Romanian
    + "‘’‚“”„«»–—…€£°"
)

# Word pieces never cross punctuation, symbols or digits (like SentencePiece's split by script and
# by number) and digits stay single, but a piece may start with the space mark ("▁(", "▁3"). The
# triple markers <H> <R> <T> of the data-to-text tasks stay whole.
PRE_SPLIT_PATTERN = r"▁?(?:<[HRT]>|[\p{P}\p{S}&&[^▁]]|\p{N})"


def sentinel_token(index: int) -> str:
    """The span-corruption sentinel `<extra_id_{index}>`."""
    return f"<extra_id_{index}>"


def _alphabet(texts: Sequence[str], character_coverage: float, required: str) -> list[str]:
    """The `required` characters plus the most frequent characters that together make up
    `character_coverage` of all characters in `texts`.

    Rarer characters (mostly single CJK, Telugu, ... characters in FLORES and the books) are left to
    the byte fallback instead of taking a vocabulary slot each.
    """
    counts: collections.Counter[str] = collections.Counter()
    for text in texts:
        counts.update(text.replace(" ", SPACE))
    alphabet = dict.fromkeys([SPACE, *required])
    total, kept = sum(counts.values()), 0
    for char, count in counts.most_common():
        if kept >= character_coverage * total:
            break
        alphabet[char] = None
        kept += count
    return list(alphabet)


def _with_bytes_and_sentinels(trained: Tokenizer, num_sentinels: int) -> Tokenizer:
    """Insert the byte tokens after the special tokens, append the sentinels and turn on byte fallback."""
    spec: dict[str, Any] = json.loads(trained.to_str())
    learned = sorted(spec["model"]["vocab"].items(), key=lambda item: item[1])
    assert [token for token, _ in learned[: len(SPECIAL_TOKENS)]] == list(SPECIAL_TOKENS), (
        "the trainer must put the special tokens first"
    )
    sentinels = [sentinel_token(i) for i in reversed(range(num_sentinels))]
    tokens = [
        *SPECIAL_TOKENS,
        *BYTE_TOKENS,
        *(token for token, _ in learned[len(SPECIAL_TOKENS) :]),
        *sentinels,
    ]
    duplicates = [token for token, n in collections.Counter(tokens).items() if n > 1]
    if duplicates:
        raise DataFormatError(
            f"learned pieces clash with reserved tokens {duplicates[:5]}: remove them from the corpus"
        )
    spec["model"]["vocab"] = {token: i for i, token in enumerate(tokens)}
    spec["model"]["byte_fallback"] = True
    tokenizer = Tokenizer.from_str(json.dumps(spec))
    # The sentinels are already in the vocabulary; registering them as special keeps their ids and makes
    # the tokenizer match them whole and drop them with skip_special_tokens.
    tokenizer.add_special_tokens([AddedToken(token, special=True, normalized=False) for token in sentinels])
    return tokenizer


def train_tokenizer(
    texts: Iterable[str],
    vocab_size: int,
    out_dir: str | Path,
    num_sentinels: int = 100,
    *,
    character_coverage: float = 0.9999,
    required_characters: str = REQUIRED_CHARACTERS,
) -> None:
    """Train a byte-fallback BPE tokenizer on `texts` and save it to `out_dir`.

    `vocab_size` is the total size including the 3 special tokens, 256 byte tokens and the sentinels
    (a tiny corpus may give fewer learned pieces, hence a smaller total). Writes `tokenizer.json` and
    `tokenizer_config.json`; load them with `AutoTokenizer.from_pretrained(out_dir)`.
    """
    corpus = [text for text in texts if text]
    alphabet = _alphabet(corpus, character_coverage, required_characters)
    trainer_size = vocab_size - len(BYTE_TOKENS) - num_sentinels  # includes the special tokens
    if trainer_size < len(SPECIAL_TOKENS) + len(alphabet):
        raise PresetError(
            f"vocab_size={vocab_size} leaves no room for learned pieces: it must exceed "
            f"{len(SPECIAL_TOKENS) + len(BYTE_TOKENS) + num_sentinels + len(alphabet)} "
            f"(3 special + 256 byte + {num_sentinels} sentinel tokens + {len(alphabet)} characters)"
        )
    tokenizer = Tokenizer(models.BPE(unk_token=UNK, byte_fallback=True))
    tokenizer.pre_tokenizer = pre_tokenizers.Sequence(
        [
            pre_tokenizers.Metaspace(replacement=SPACE, prepend_scheme="always", split=True),
            pre_tokenizers.Split(Regex(PRE_SPLIT_PATTERN), behavior="isolated"),
        ]
    )
    trainer = trainers.BpeTrainer(
        vocab_size=trainer_size,
        special_tokens=list(SPECIAL_TOKENS),
        initial_alphabet=alphabet,
        limit_alphabet=len(alphabet),
        show_progress=False,
    )
    tokenizer.train_from_iterator(corpus, trainer)
    tokenizer = _with_bytes_and_sentinels(tokenizer, num_sentinels)
    tokenizer.decoder = decoders.Sequence(
        [decoders.Replace(SPACE, " "), decoders.ByteFallback(), decoders.Fuse(), decoders.Strip(" ", 1, 0)]
    )
    eos_id = tokenizer.token_to_id(EOS)
    tokenizer.post_processor = processors.TemplateProcessing(
        single=f"$A:0 {EOS}:0", pair=f"$A:0 {EOS}:0 $B:0 {EOS}:0", special_tokens=[(EOS, eos_id)]
    )

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    tokenizer.save(str(out_dir / "tokenizer.json"))
    config = {
        "tokenizer_class": "PreTrainedTokenizerFast",
        "pad_token": PAD,
        "eos_token": EOS,
        "unk_token": UNK,
        "extra_special_tokens": [sentinel_token(i) for i in range(num_sentinels)],
        "add_bos_token": False,
        "add_eos_token": True,
        # The default clean-up turns "a ." into "a." and would break the round trip.
        "clean_up_tokenization_spaces": False,
    }
    (out_dir / "tokenizer_config.json").write_text(json.dumps(config, indent=2, ensure_ascii=False) + "\n")


def check_roundtrip(tokenizer: Any, texts: Iterable[str], batch_size: int = 1024) -> list[str]:
    """Texts that do not survive `decode(encode(text), skip_special_tokens=True)`, in input order, unique.

    `tokenizer` is a transformers tokenizer (e.g. from `AutoTokenizer.from_pretrained`). An empty list
    means every text round-trips.
    """
    unique = list(dict.fromkeys(texts))
    failures: list[str] = []
    for start in range(0, len(unique), batch_size):
        batch = unique[start : start + batch_size]
        ids = tokenizer(batch, add_special_tokens=True)["input_ids"]
        decoded = tokenizer.batch_decode(ids, skip_special_tokens=True)
        failures.extend(text for text, back in zip(batch, decoded, strict=True) if text != back)
    return failures


def corpus_texts(data_dir: str | Path | None = None, book_chars: int | None = None) -> list[str]:
    """A tokenizer-training corpus: sources and targets of every task's train split, plus book paragraphs.

    Evaluation splits are left out on purpose (byte fallback covers their unseen characters).
    `book_chars` caps the book text taken (paragraphs in file order across all books; None = all).
    """
    texts: list[str] = []
    for task in TASKS:
        for example in load_task(task, "train", data_dir).examples:
            texts += (example.source, example.target)
    taken = 0
    for _, book in load_books(data_dir):
        for paragraph in book.split("\n\n"):
            text = normalize_whitespace(paragraph)
            if book_chars is not None and taken + len(text) > book_chars:
                return texts
            if text:
                texts.append(text)
                taken += len(text)
    return texts


def task_texts(data_dir: str | Path | None = None) -> list[str]:
    """Every source and target of every split of every task: what the tokenizer must round-trip."""
    return [
        text
        for task, spec in TASKS.items()
        for split in spec.splits
        for example in load_task(task, split, data_dir).examples
        for text in (example.source, example.target)
    ]


def train_on_data(
    config: PretrainTokenizerConfig, data_dir: str | Path | None, out_dir: str | Path
) -> dict[str, Any]:
    """Train a preset's tokenizer on `corpus_texts(data_dir)` into `out_dir`.

    Returns the facts a run records: corpus_texts, corpus_chars, read_s and train_s (seconds).
    """
    started = time.perf_counter()
    texts = corpus_texts(data_dir, config.book_chars)
    read_s = time.perf_counter() - started
    train_tokenizer(texts, config.vocab_size, out_dir, config.num_sentinels)
    return {
        "corpus_texts": len(texts),
        "corpus_chars": sum(map(len, texts)),
        "read_s": read_s,
        "train_s": time.perf_counter() - started - read_s,
    }
