"""How familiar a task's inputs are to a base model: the average corpus bigram frequency (An et al. 2022).

Definition (docs/familiarity.md says the same for users):

- Tokens are the base's own tokenizer's, without special tokens. A bigram is two consecutive tokens of
  one *text unit*: a line of an input file, a paragraph of a book, one source or one target of a
  supervised example. Bigrams never cross units.
- The corpus is what the base was pretrained on, read from its folder's ``recipe.json``: the training
  books (the held-out validation books left out) and, for a mixture, the supervised part, each train
  example counted **once** as two units, its encoder input (task prefix + source, as the base saw it)
  and its target, whatever its mixture weight. ``--corpus FILES`` replaces it (bases with no recipe).
- The frequency of a bigram is ``10^6 · count / N`` (per million corpus bigrams, N all of them).
- The familiarity of a set of inputs is the mean of that frequency over every bigram occurrence of
  every input. An unseen bigram counts as frequency 0 and stays in the mean (so many unseen bigrams
  pull it down); ``unseen`` reports their share. Inputs of one token add no bigram.

Counts are cached as ``familiarity-<key>.npz`` (sorted bigram keys ``a·V + b`` and their counts, per
corpus part), keyed by the corpus description and the tokenizer, so a second query takes a second.
"""

from __future__ import annotations

import csv
import hashlib
import json
import logging
import time
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from training.data import load_task, normalize_whitespace
from training.errors import ConfigError, DataFormatError, DataNotFoundError

log = logging.getLogger(__name__)

RECIPE_FILE = "recipe.json"
CACHE_VERSION = 1
PER = 1_000_000  # frequencies per million corpus bigrams
CHUNK = 4096  # texts tokenised per batch

# How to read a value on the demo base (docs/study.md, part 2; docs/familiarity.md): (upper bound,
# reading), lowest first. Values depend on the corpus and the tokenizer: on another base, compare a task
# with tasks whose outcome you know, measured against the same corpus.
READINGS: tuple[tuple[float, str], ...] = (
    (
        10.0,
        "unfamiliar: expect prompt-tuning to fall short of fine-tuning; use input-tuning (on the demo base, "
        "six such tasks: prompt-tuning reached 31-82% of fine-tuning's chrF, and input-tuning beat it "
        "significantly on all six)",
    ),
    (
        25.0,
        "in between: no clear expectation (the study had no task here); compare prompt- and input-tuning on dev",
    ),
    (
        float("inf"),
        "familiar: where the task itself was in the base's pretraining (fr-en, WebNLG, DART on the demo base) "
        "prompt-tuning came within 87-100% of fine-tuning and input-tuning did no better; familiar words "
        "alone were not enough (e2e-plain: prompt-tuning 30% of fine-tuning, input-tuning significantly "
        "better); compare on dev",
    ),
)


# --------------------------------------------------------------------------------------- counting


@dataclass
class BigramCounts:
    """Bigram counts of one corpus part: ``keys`` sorted ``a·V + b`` (int64), ``counts`` (int64)."""

    vocab: int
    keys: np.ndarray
    counts: np.ndarray

    @property
    def total(self) -> int:
        return int(self.counts.sum())

    def lookup(self, keys: np.ndarray) -> np.ndarray:
        """Counts of ``keys`` (0 for a bigram the corpus never has)."""
        if len(self.keys) == 0:
            return np.zeros(len(keys), dtype=np.int64)
        pos = np.searchsorted(self.keys, keys).clip(0, len(self.keys) - 1)
        return np.where(self.keys[pos] == keys, self.counts[pos], 0)


def bigram_keys(rows: Iterable[Sequence[int]], vocab: int) -> np.ndarray:
    """``a·V + b`` of every consecutive pair of every row (no pair across rows)."""
    parts = []
    for row in rows:
        if len(row) >= 2:
            ids = np.asarray(row, dtype=np.int64)
            parts.append(ids[:-1] * vocab + ids[1:])
    return np.concatenate(parts) if parts else np.zeros(0, dtype=np.int64)


def count_bigrams(rows: Iterable[Sequence[int]], vocab: int) -> BigramCounts:
    """Count the bigrams of token rows (merged chunk by chunk, so memory stays bounded)."""
    keys, counts = np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.int64)
    batch: list[Sequence[int]] = []

    def merge(batch: list[Sequence[int]]) -> None:
        nonlocal keys, counts
        k, c = np.unique(bigram_keys(batch, vocab), return_counts=True)
        allk = np.concatenate([keys, k])
        allc = np.concatenate([counts, c.astype(np.int64)])
        keys, inverse = np.unique(allk, return_inverse=True)
        counts = np.bincount(inverse, weights=allc, minlength=len(keys)).astype(np.int64)

    for row in rows:
        batch.append(row)
        if len(batch) >= 50 * CHUNK:
            merge(batch)
            batch = []
    if batch:
        merge(batch)
    return BigramCounts(vocab, keys, counts)


def tokenize(tokenizer: Any, texts: Iterable[str]) -> Iterator[list[int]]:
    """Token ids of each text without special tokens, in batches."""
    batch: list[str] = []
    for text in texts:
        batch.append(text)
        if len(batch) >= CHUNK:
            yield from tokenizer(batch, add_special_tokens=False)["input_ids"]
            batch = []
    if batch:
        yield from tokenizer(batch, add_special_tokens=False)["input_ids"]


def vocab_size(tokenizer: Any) -> int:
    return len(tokenizer)


# --------------------------------------------------------------------------------------- corpora


@dataclass
class CorpusSpec:
    """What to count: named parts, each a function yielding text units, and a description for the
    cache key and the report. ``source`` is "recipe" or "files"."""

    source: str
    description: dict[str, Any]
    parts: dict[str, Any] = field(default_factory=dict)  # name -> () -> Iterable[str]
    note: str = ""


def read_recipe(base_dir: Path) -> dict[str, Any] | None:
    path = base_dir / RECIPE_FILE
    if not path.is_file():
        return None
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as e:
        raise DataFormatError(f"{path} is not valid JSON ({e.msg}): restore it or pass --corpus") from e


def _book_units(data_dir: str | Path | None, heldout: set[str]) -> Iterator[str]:
    from training.pretrain.books import load_books

    for name, text in load_books(data_dir):
        if name in heldout:
            continue
        for paragraph in text.split("\n\n"):
            if unit := normalize_whitespace(paragraph):
                yield unit


def _supervised_units(task: str, facts: dict[str, Any], data_dir: str | Path | None) -> Iterator[str]:
    prefix = facts.get("prefix", "")
    split = load_task(
        task, facts.get("split", "train"), data_dir, exclude_e2e=bool(facts.get("exclude_e2e", False))
    )
    for example in split.examples:
        yield normalize_whitespace(prefix + example.source)
        yield example.target


def recipe_corpus(recipe: dict[str, Any], data_dir: str | Path | None = None) -> CorpusSpec:
    """The corpus a recipe.json says the base was pretrained on (books + supervised train splits)."""
    sources = recipe.get("sources")
    if not isinstance(sources, dict) or "books" not in sources:
        raise DataFormatError(
            "the base's recipe.json has no 'sources' with 'books': it was not written by "
            "`inputtune pretrain`; pass --corpus FILES instead"
        )
    heldout = set(sources["books"].get("heldout_books", []))
    supervised = sources.get("supervised", {}) or {}
    parts: dict[str, Any] = {"books": lambda: _book_units(data_dir, heldout)}
    if supervised:

        def sup() -> Iterator[str]:
            for task, facts in supervised.items():
                yield from _supervised_units(task, facts, data_dir)

        parts["supervised"] = sup
    description = {
        "books": sources["books"].get("files"),
        "heldout_books": sorted(heldout),
        "supervised": {
            t: {k: f.get(k) for k in ("split", "prefix", "exclude_e2e", "examples")}
            for t, f in supervised.items()
        },
        "fingerprint": recipe.get("fingerprint"),
    }
    return CorpusSpec("recipe", description, parts)


def _file_units(path: Path, inputs: bool = False) -> Iterator[str]:
    """Text units of a file. JSONL: a corpus record's "text" (else its "source" and "target"), an input
    record's "source" (else "text" or "inputs"); CSV: the "source" (else "text") column; any other
    file: its non-blank lines."""
    if not path.is_file():
        raise DataNotFoundError(f"{path} does not exist")
    suffix = path.suffix.lower()
    if suffix == ".jsonl":
        from training.data.core import read_jsonl

        wanted = (("source",), ("text",), ("inputs",)) if inputs else (("text",), ("source", "target"))
        for line, record in read_jsonl(path):
            if not isinstance(record, dict):
                raise DataFormatError(f"{path}, line {line}: expected a JSON object")
            fields = next((f for f in wanted if all(isinstance(record.get(k), str) for k in f)), None)
            if fields is None:
                names = " or ".join("/".join(f) for f in wanted)
                raise DataFormatError(f"{path}, line {line}: no text field: give each record {names}")
            for k in fields:
                if unit := normalize_whitespace(record[k]):
                    yield unit
        return
    if suffix == ".csv":
        with path.open(encoding="utf-8-sig", newline="") as f:
            reader = csv.DictReader(f)
            column = next((c for c in ("source", "text") if c in (reader.fieldnames or [])), None)
            if column is None:
                raise DataFormatError(f"{path}: the CSV header must name a 'source' or 'text' column")
            for row in reader:
                if unit := normalize_whitespace(row[column] or ""):
                    yield unit
        return
    try:
        with path.open(encoding="utf-8") as f:
            for line in f:
                if unit := normalize_whitespace(line):
                    yield unit
    except UnicodeDecodeError as e:
        raise DataFormatError(f"{path}: not valid UTF-8 text ({e.reason})") from e


def file_corpus(paths: Sequence[str | Path]) -> CorpusSpec:
    """A user-supplied corpus: text, JSONL or CSV files (see ``_file_units``)."""
    files = [Path(p) for p in paths]
    for p in files:
        if not p.is_file():
            raise DataNotFoundError(f"corpus file {p} does not exist")
    stats = [
        {"path": str(p.resolve()), "bytes": p.stat().st_size, "mtime": int(p.stat().st_mtime)} for p in files
    ]

    def units() -> Iterator[str]:
        for p in files:
            yield from _file_units(p)

    return CorpusSpec("files", {"files": stats}, {"corpus": units})


def input_units(path: str | Path) -> list[str]:
    """The inputs of a user's file (one per line, or each JSONL/CSV record's source)."""
    units = list(_file_units(Path(path), inputs=True))
    if not units:
        raise DataFormatError(f"{path}: no inputs found")
    return units


# --------------------------------------------------------------------------------------- cache


def _tokenizer_id(tokenizer: Any) -> str:
    vocab = sorted(tokenizer.get_vocab().items())
    return hashlib.sha256(json.dumps(vocab).encode()).hexdigest()[:16]


def cache_key(spec: CorpusSpec, tokenizer: Any) -> str:
    blob = json.dumps(
        {"v": CACHE_VERSION, "corpus": spec.description, "tok": _tokenizer_id(tokenizer)}, sort_keys=True
    )
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


def load_or_count(
    spec: CorpusSpec, tokenizer: Any, cache_dir: Path | None
) -> tuple[dict[str, BigramCounts], dict[str, Any]]:
    """Counts per corpus part, from the cache or counted now (and cached when ``cache_dir`` is set).
    Returns (counts, facts: cache path, whether it was a hit, seconds)."""
    vocab = vocab_size(tokenizer)
    path = cache_dir / f"familiarity-{cache_key(spec, tokenizer)}.npz" if cache_dir else None
    started = time.perf_counter()
    if path is not None and path.is_file():
        with np.load(path) as z:
            names = [str(n) for n in z["parts"]]
            counts = {n: BigramCounts(vocab, z[f"{n}.keys"], z[f"{n}.counts"]) for n in names}
        return counts, {"cache": str(path), "cached": True, "seconds": time.perf_counter() - started}
    counts = {name: count_bigrams(tokenize(tokenizer, units()), vocab) for name, units in spec.parts.items()}
    if path is not None:
        path.parent.mkdir(parents=True, exist_ok=True)
        arrays = {f"{n}.{k}": getattr(c, k) for n, c in counts.items() for k in ("keys", "counts")}
        tmp = path.with_name(path.name + ".tmp.npz")
        np.savez(tmp, parts=np.array(list(counts)), **arrays)
        tmp.replace(path)
    return counts, {
        "cache": str(path) if path else None,
        "cached": False,
        "seconds": time.perf_counter() - started,
    }


# --------------------------------------------------------------------------------------- measure


def familiarity_of_keys(keys: np.ndarray, counts: Sequence[BigramCounts]) -> dict[str, Any]:
    """{"familiarity", "unseen", "bigrams"} of input bigram ``keys`` against the summed ``counts``."""
    total = sum(c.total for c in counts)
    if len(keys) == 0:
        return {"familiarity": None, "unseen": None, "bigrams": 0}
    found = sum((c.lookup(keys) for c in counts), np.zeros(len(keys), dtype=np.int64))
    freq = PER * found / total if total else np.zeros(len(keys))
    return {
        "familiarity": float(freq.mean()),
        "unseen": float((found == 0).mean()),
        "bigrams": int(len(keys)),
    }


def measure(texts: Sequence[str], tokenizer: Any, counts: dict[str, BigramCounts]) -> dict[str, Any]:
    """Familiarity of ``texts`` against every part together, and against each part alone.

    Returns {"familiarity", "unseen", "bigrams", "inputs", "tokens", "corpus_bigrams", "parts":
    {part: {"familiarity", "unseen", "corpus_bigrams"}}}.
    """
    rows = list(tokenize(tokenizer, texts))
    keys = bigram_keys(rows, vocab_size(tokenizer))
    result = familiarity_of_keys(keys, list(counts.values()))
    result.update(
        inputs=len(texts),
        tokens=int(sum(len(r) for r in rows)),
        corpus_bigrams=int(sum(c.total for c in counts.values())),
    )
    if len(counts) > 1:
        result["parts"] = {
            name: {**familiarity_of_keys(keys, [c]), "corpus_bigrams": c.total} for name, c in counts.items()
        }
    return result


def reading(value: float | None) -> str:
    """How to read a familiarity value (thresholds from the study)."""
    if value is None:
        return "no bigrams in the inputs (every input is a single token): nothing to measure"
    return next(text for bound, text in READINGS if value < bound)


def corpus_for_base(
    base_dir: Path, corpus_files: Sequence[str] | None, data_dir: str | Path | None
) -> CorpusSpec:
    """The base's recipe corpus, or the user's files; says which (``note``) and refuses neither."""
    recipe = read_recipe(base_dir)
    if corpus_files:
        spec = file_corpus(corpus_files)
        spec.note = "corpus: the files given with --corpus" + (
            " (instead of the base's recipe.json)" if recipe else f" ({base_dir} has no {RECIPE_FILE})"
        )
        return spec
    if recipe is None:
        raise ConfigError(
            f"{base_dir} has no {RECIPE_FILE}, so what the base was pretrained on is unknown (a downloaded "
            "T5 has none): pass --corpus FILES, a sample of text like its pretraining corpus (C4-like "
            "English web text for T5), as .txt (one unit per line), .jsonl ('text') or .csv"
        )
    spec = recipe_corpus(recipe, data_dir)
    spec.note = f"corpus: what {base_dir / RECIPE_FILE} says the base was pretrained on"
    return spec
