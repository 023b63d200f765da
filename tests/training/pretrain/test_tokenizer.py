"""Our own byte-fallback tokenizer: special ids, eos, exact round trips, loading through AutoTokenizer."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest
from transformers import AutoTokenizer, PreTrainedTokenizerFast

from training.data import (
    TASKS,
    DataNotFoundError,
    load_task,
    normalize_whitespace,
    resolve_data_dir,
)
from training.pretrain.books import load_books
from training.pretrain.tokenizer import check_roundtrip, corpus_texts, sentinel_token, train_tokenizer

CORPUS = [
    "The Vaults pub near Café Adriatic has a 5 star rating.",
    "name[The Vaults], eatType[pub], priceRange[more than £30]",
    "<H> Aarhus_Airport <R> cityServed <T> Aarhus, Denmark",
    "( call SW.listValue ( call SW.getProperty en.block.block1 ( string height ) ) )",
    "Two young, White males are outside near many bushes.",
    "Deux jeunes hommes blancs sont dehors près de buissons.",
] * 20

UNSEEN = [
    "£ [ ] are E2E's brackets and pounds",
    "Fostul șef al cabinetului prezidențial brazilian; şi ţară (cedilla forms)",
    "Dva mladí muži ř ě ů č ž ý",
    "Größe Straße, « présent », a-t-il ajouté… “quoted” — dash",
    "emoji 😀 and CJK 遠 and Telugu ఠ and a zero\u200bwidth space and soft\u00adhyphen",
    "literal byte-token look-alike <0x41> and <H>x<R>y<T>z",
    "a",
    "1,000,000.25 £30-£40 e-mail@example.com #tag ~tilde^caret|pipe\\back`tick",
]


@pytest.fixture(scope="module")
def tokenizer_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("tokenizer")
    train_tokenizer(CORPUS, vocab_size=1_000, out_dir=out, num_sentinels=100)
    return out


@pytest.fixture(scope="module")
def tokenizer(tokenizer_dir: Path) -> PreTrainedTokenizerFast:
    loaded = AutoTokenizer.from_pretrained(str(tokenizer_dir))
    assert isinstance(loaded, PreTrainedTokenizerFast), type(loaded)
    return loaded


def test_files_and_config(tokenizer_dir: Path, tokenizer: PreTrainedTokenizerFast) -> None:
    assert sorted(p.name for p in tokenizer_dir.iterdir()) == ["tokenizer.json", "tokenizer_config.json"]
    config = json.loads((tokenizer_dir / "tokenizer_config.json").read_text())
    assert config["tokenizer_class"] == "PreTrainedTokenizerFast"
    assert config["clean_up_tokenization_spaces"] is False


def test_special_ids_follow_t5(tokenizer: PreTrainedTokenizerFast) -> None:
    assert (tokenizer.pad_token_id, tokenizer.eos_token_id, tokenizer.unk_token_id) == (0, 1, 2)
    assert tokenizer.convert_tokens_to_ids(["<0x00>", "<0xFF>"]) == [3, 258]
    size = len(tokenizer)
    assert tokenizer.vocab_size == size  # sentinels are in the base vocabulary, as in T5
    sentinel_ids = tokenizer.convert_tokens_to_ids([sentinel_token(i) for i in range(100)])
    assert sentinel_ids == list(range(size - 1, size - 101, -1))  # <extra_id_0> is the last id
    assert set(tokenizer.all_special_ids) == {0, 1, 2, *sentinel_ids}


def test_eos_appended_once(tokenizer: PreTrainedTokenizerFast) -> None:
    ids = tokenizer("The Vaults pub")["input_ids"]
    assert ids[-1] == 1 and ids.count(1) == 1
    assert tokenizer("The Vaults pub", add_special_tokens=False)["input_ids"] == ids[:-1]
    batch = tokenizer(["a", "The Vaults pub"], padding=True)["input_ids"]
    assert batch[0][:2] == [tokenizer.convert_tokens_to_ids("▁a"), 1] and batch[0][-1] == 0


def test_roundtrip_including_unseen_characters(tokenizer: PreTrainedTokenizerFast) -> None:
    assert check_roundtrip(tokenizer, CORPUS + UNSEEN) == []
    for text in UNSEEN:
        assert tokenizer.unk_token_id not in tokenizer(text)["input_ids"], text
    emoji_ids = tokenizer("😀", add_special_tokens=False)["input_ids"]
    assert tokenizer.convert_ids_to_tokens(emoji_ids)[-4:] == ["<0xF0>", "<0x9F>", "<0x98>", "<0x80>"]


def test_check_roundtrip_reports_failures(tokenizer: PreTrainedTokenizerFast) -> None:
    # A leading space is dropped (T5 convention), special-token strings by skip_special_tokens, and the
    # word-boundary mark decodes as a space. Repeated spaces, tabs and newlines inside a text survive.
    texts = [" leading", "has </s> inside", "▁mark", "ok", "two  spaces\tand\nlines"]
    assert check_roundtrip(tokenizer, texts + texts) == [" leading", "has </s> inside", "▁mark"]


def test_sentinels_decode(tokenizer: PreTrainedTokenizerFast) -> None:
    ids = [
        tokenizer.convert_tokens_to_ids(sentinel_token(0)),
        *tokenizer("pub", add_special_tokens=False)["input_ids"],
    ]
    assert tokenizer.decode(ids) == "<extra_id_0> pub"
    assert tokenizer.decode(ids, skip_special_tokens=True) == "pub"


def test_vocab_too_small(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match=r"vocab_size=400 leaves no room .*256 byte \+ 100 sentinel"):
        train_tokenizer(CORPUS, vocab_size=400, out_dir=tmp_path)


@pytest.fixture(scope="module")
def real_data_dir() -> Path:
    try:
        return resolve_data_dir()
    except DataNotFoundError as e:
        pytest.skip(f"real data not present, skipping the full round-trip check ({e})")


@pytest.mark.slow
def test_real_data_roundtrip(real_data_dir: Path, tmp_path: Path) -> None:
    """Every source and target of every task and split, and a paragraph sample of every book, survive."""
    start = time.perf_counter()
    # A small sample is enough: characters outside it go through the byte fallback, which is the point.
    train_tokenizer(
        corpus_texts(real_data_dir, book_chars=1_000_000)[::20], vocab_size=4_000, out_dir=tmp_path
    )
    tokenizer = AutoTokenizer.from_pretrained(str(tmp_path))
    texts = [
        text
        for task, spec in TASKS.items()
        for split in spec.splits
        for example in load_task(task, split, real_data_dir).examples
        for text in (example.source, example.target)
    ]
    assert len(texts) == 579_378  # 2 x the examples of every split of every task
    for _, book in load_books(real_data_dir):
        paragraphs = [normalize_whitespace(p) for p in book.split("\n\n")]
        texts += [p for p in paragraphs[:: max(1, len(paragraphs) // 50)] if p]
    assert check_roundtrip(tokenizer, texts) == []
    print(f"round trip of {len(set(texts)):,} texts in {time.perf_counter() - start:.1f} s")
