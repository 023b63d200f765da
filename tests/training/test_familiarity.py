"""The familiarity measure on small fixtures: known bigram counts give known values, unseen bigrams
count as 0 and stay in the mean, the recipe's corpus is books (held-out ones left out) plus each
supervised example once (prefix + source, and target)."""

from __future__ import annotations

import json

import numpy as np
import pytest
from transformers import ByT5Tokenizer

from training.errors import ConfigError, DataFormatError
from training.familiarity import (
    PER,
    bigram_keys,
    corpus_for_base,
    count_bigrams,
    input_units,
    load_or_count,
    measure,
    reading,
)


class WordTokenizer:
    """Whitespace words -> fixed ids: bigrams a reader can count by hand."""

    VOCAB = {w: i for i, w in enumerate(["a", "b", "c", "d", "e"])}

    def __call__(self, texts, add_special_tokens=False):
        return {"input_ids": [[self.VOCAB[w] for w in t.split()] for t in texts]}

    def get_vocab(self):
        return dict(self.VOCAB)

    def __len__(self):
        return len(self.VOCAB)


def test_count_bigrams_counts_within_rows_only():
    counts = count_bigrams([[0, 1, 0, 1], [1, 2], [3]], vocab=5)
    table = {divmod(int(k), 5): int(c) for k, c in zip(counts.keys, counts.counts, strict=True)}
    assert table == {(0, 1): 2, (1, 0): 1, (1, 2): 1}  # no (1, 1) across the rows, none from [3]
    assert counts.total == 4
    assert counts.lookup(bigram_keys([[0, 1, 4, 4]], 5)).tolist() == [2, 0, 0]


def test_known_counts_give_known_familiarity_with_unseen_as_zero():
    tok = WordTokenizer()
    counts = {"corpus": count_bigrams([[0, 1, 0, 1], [1, 2]], vocab=5)}  # a b:2, b a:1, b c:1; N=4
    result = measure(["a b", "b c d", "e"], tok, counts)
    # input bigrams: a b (2/4), b c (1/4), c d (unseen, 0); "e" has none
    expected = PER * (2 / 4 + 1 / 4 + 0) / 3
    assert result["familiarity"] == pytest.approx(expected)
    assert result["unseen"] == pytest.approx(1 / 3)
    assert (result["bigrams"], result["inputs"], result["tokens"], result["corpus_bigrams"]) == (3, 3, 6, 4)


def test_inputs_without_bigrams_have_no_value():
    counts = {"corpus": count_bigrams([[0, 1]], vocab=5)}
    result = measure(["a", "b"], WordTokenizer(), counts)
    assert result["familiarity"] is None
    assert "nothing to measure" in reading(None)


def test_reading_thresholds_are_ordered():
    assert reading(0.0).startswith("unfamiliar")
    assert reading(1e9).startswith("familiar")


def test_input_files_text_and_jsonl(tmp_path):
    text = tmp_path / "inputs.txt"
    text.write_text("first  input\n\n second\n")
    jsonl = tmp_path / "inputs.jsonl"
    jsonl.write_text(json.dumps({"source": "a b", "target": "x"}) + "\n" + json.dumps({"text": "c d"}) + "\n")
    assert input_units(text) == ["first input", "second"]
    assert input_units(jsonl) == ["a b", "c d"]  # an input file's targets are not inputs
    bad = tmp_path / "bad.jsonl"
    bad.write_text(json.dumps({"other": 1}) + "\n")
    with pytest.raises(DataFormatError, match="line 1: no text field"):
        input_units(bad)


def test_corpus_jsonl_counts_text_else_source_and_target(tmp_path):
    tok = WordTokenizer()
    corpus = tmp_path / "corpus.jsonl"
    corpus.write_text(
        json.dumps({"source": "a b", "target": "c d"}) + "\n" + json.dumps({"text": "a b"}) + "\n"
    )
    counts, _ = load_or_count(corpus_for_base(tmp_path, [str(corpus)], None), tok, None)
    result = measure(["a b"], tok, counts)  # a b: 2 of 3 corpus bigrams
    assert result["familiarity"] == pytest.approx(PER * 2 / 3)


def _recipe_base(tmp_path):
    """A base folder with a recipe, and a data folder: books a.txt (trained) and z.txt (held out),
    fr-en train split of one pair with the prefix 'p:'."""
    data = tmp_path / "data"
    (data / "pretrain_en" / "books").mkdir(parents=True)
    (data / "pretrain_en" / "books" / "a.txt").write_text("abab\n\nab\n")
    (data / "pretrain_en" / "books" / "z.txt").write_text("zzzz ab\n")
    (data / "multi30k").mkdir()
    (data / "multi30k" / "train.fr").write_text("ba\n")
    (data / "multi30k" / "train.en").write_text("cd\n")
    base = tmp_path / "base"
    base.mkdir()
    recipe = {
        "sources": {
            "books": {"files": "pretrain_en/books/*.txt", "heldout_books": ["z.txt"]},
            "supervised": {"fr-en": {"split": "train", "prefix": "p:", "exclude_e2e": False}},
        }
    }
    (base / "recipe.json").write_text(json.dumps(recipe))
    return base, data


def test_recipe_corpus_is_books_plus_each_supervised_example_once(tmp_path):
    base, data = _recipe_base(tmp_path)
    tok = ByT5Tokenizer()  # one token per byte: bigrams are character pairs
    spec = corpus_for_base(base, None, data)
    assert spec.source == "recipe" and "recipe.json" in spec.note
    counts, facts = load_or_count(spec, tok, tmp_path / "cache")
    # books: "abab" (ab, ba, ab) + "ab" (ab) -> 4 bigrams; z.txt held out.
    # supervised: "p:ba" (p:, :b, ba) + "cd" (cd) -> 4 bigrams.
    assert (counts["books"].total, counts["supervised"].total) == (4, 4)
    result = measure(["ab"], tok, counts)
    assert result["familiarity"] == pytest.approx(PER * 3 / 8)
    assert result["parts"]["books"]["familiarity"] == pytest.approx(PER * 3 / 4)
    assert result["parts"]["supervised"]["familiarity"] == 0.0
    assert result["parts"]["supervised"]["unseen"] == 1.0
    # the second query reads the cache
    again, facts2 = load_or_count(spec, tok, tmp_path / "cache")
    assert not facts["cached"] and facts2["cached"] and facts2["cache"] == facts["cache"]
    assert np.array_equal(again["books"].keys, counts["books"].keys)


def test_user_corpus_replaces_the_recipe_and_says_so(tmp_path):
    base, data = _recipe_base(tmp_path)
    corpus = tmp_path / "c4_sample.txt"
    corpus.write_text("xyxy\n")
    spec = corpus_for_base(base, [str(corpus)], data)
    assert spec.source == "files" and "instead of the base's recipe.json" in spec.note


def test_no_recipe_and_no_corpus_is_a_clear_error(tmp_path):
    with pytest.raises(ConfigError, match="has no recipe.json.*pass --corpus FILES"):
        corpus_for_base(tmp_path, None, None)
