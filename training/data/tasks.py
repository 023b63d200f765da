"""Built-in tasks: a registry of readers over the shared data folder, and `load_task`.

Each reader takes the resolved data folder and a split name and returns raw (source, target) pairs in
file order; `load_task` normalises and groups them (see `core.build_split`). The folder layout and
counts are described in each data subfolder's SOURCE.md.
"""

from __future__ import annotations

import csv
import functools
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from training.data.core import (
    TaskSplit,
    build_split,
    read_jsonl,
    read_lines,
    read_parallel,
    require_file,
    resolve_data_dir,
)
from training.errors import ConfigError, DataFormatError

Pairs = list[tuple[str, str]]
Reader = Callable[[Path, str], Pairs]

OVERNIGHT_DOMAINS = (
    "basketball",
    "blocks",
    "calendar",
    "housing",
    "publications",
    "recipes",
    "restaurants",
    "socialnetwork",
)
OVERNIGHT_DEV_EVERY = 10  # row i of each domain's train file goes to dev when i % 10 == 9


@dataclass(frozen=True)
class TaskSpec:
    """A built-in task: its name, what it maps to what, its split names and the reader behind them."""

    name: str
    description: str
    splits: tuple[str, ...]
    read: Reader = field(repr=False, compare=False)


def linearize_triples(triples: Sequence[Sequence[str]]) -> str:
    """`[[s, r, o], ...]` -> "<H> s <R> r <T> o <H> ..." (one <H>..<R>..<T> group per triple, in order)."""
    return " ".join(f"<H> {subject} <R> {relation} <T> {obj}" for subject, relation, obj in triples)


def _get(row: Any, key: str, path: Path, line: int) -> Any:
    if not isinstance(row, dict) or key not in row:
        raise DataFormatError(f"{path}, line {line}: missing field '{key}'")
    return row[key]


def _triples(row: Any, key: str, path: Path, line: int) -> str:
    triples = _get(row, key, path, line)
    if not isinstance(triples, list) or not all(
        isinstance(t, list) and len(t) == 3 and all(isinstance(x, str) for x in t) for t in triples
    ):
        raise DataFormatError(
            f"{path}, line {line}: field '{key}' must be a list of [subject, relation, object] string triples"
        )
    return linearize_triples(triples)


# --- data-to-text -------------------------------------------------------------------------------------

_E2E_FILES = {"train": "trainset.csv", "dev": "devset.csv", "test": "testset_w_refs.csv"}


def _read_e2e(root: Path, split: str) -> Pairs:
    path = require_file(root / "e2e" / _E2E_FILES[split])
    with path.open(encoding="utf-8", newline="") as f:
        reader = csv.DictReader(f)
        if reader.fieldnames is None or not {"mr", "ref"} <= set(reader.fieldnames):
            raise DataFormatError(f"{path}: expected a CSV header with columns 'mr' and 'ref'")
        return [(row["mr"], row["ref"]) for row in reader]


def _read_dart(root: Path, split: str, exclude_e2e: bool = False) -> Pairs:
    path = root / "dart" / f"{split}.jsonl"
    pairs: Pairs = []
    for line, row in read_jsonl(path):
        # `source` is the annotation's origin; "e2e" marks the rows converted from the E2E data set.
        if exclude_e2e and _get(row, "source", path, line) == "e2e":
            continue
        pairs.append((_triples(row, "tripleset", path, line), _get(row, "text", path, line)))
    return pairs


def _read_webnlg(root: Path, split: str) -> Pairs:
    path = root / "webnlg2017" / f"{split}.jsonl"
    pairs: Pairs = []
    for line, entry in read_jsonl(path):
        source = _triples(entry, "triples", path, line)
        pairs.extend((source, _get(lex, "text", path, line)) for lex in _get(entry, "lexs", path, line))
    return pairs


def _read_overnight(root: Path, split: str) -> Pairs:
    """Logical form (column 3) -> utterance (column 1), the 8 domains pooled in a fixed order.

    dev is every 10th row of each domain's train file and train is the rest; test is the *_test.tsv files.
    """
    pairs: Pairs = []
    for domain in OVERNIGHT_DOMAINS:
        path = root / "overnight" / f"{domain}_{'test' if split == 'test' else 'train'}.tsv"
        for index, line in enumerate(read_lines(path)):
            is_dev_row = index % OVERNIGHT_DEV_EVERY == OVERNIGHT_DEV_EVERY - 1
            if split != "test" and is_dev_row != (split == "dev"):
                continue
            columns = line.split("\t")  # no CSV quoting: utterances contain quotes
            if len(columns) != 3:
                raise DataFormatError(
                    f"{path}, line {index + 1}: expected 3 tab-separated columns (nl, cf, lf), "
                    f"found {len(columns)}"
                )
            utterance, _canonical, logical_form = columns
            pairs.append((logical_form, utterance))
    return pairs


# --- translation into English -------------------------------------------------------------------------


def _read_translation(root: Path, split: str, files: Mapping[str, tuple[str, str]]) -> Pairs:
    source, target = files[split]
    return read_parallel(root / source, root / target)


def _translation_spec(name: str, description: str, files: dict[str, tuple[str, str]]) -> TaskSpec:
    return TaskSpec(name, description, tuple(files), functools.partial(_read_translation, files=files))


def _multi30k_spec(lang: str, flores_lang: str, language: str) -> TaskSpec:
    """Multi30k train/val/test_2016_flickr, FLORES devtest, and for fr/de the WMT newstest2014."""
    files = {
        split: (f"multi30k/{stem}.{lang}", f"multi30k/{stem}.en")
        for split, stem in (("train", "train"), ("dev", "val"), ("test", "test_2016_flickr"))
    }
    files["flores"] = (f"flores101_devtest/{flores_lang}.devtest", "flores101_devtest/eng.devtest")
    if lang in ("fr", "de"):
        folder = f"wmt14_newstest_fr_de_en/{lang}-en"
        files["newstest2014"] = (f"{folder}/newstest2014.{lang}", f"{folder}/newstest2014.en")
    sets = "Multi30k captions (train/dev/test), FLORES-101" + (
        ", WMT newstest2014" if lang in ("fr", "de") else ""
    )
    return _translation_spec(f"{lang}-en", f"{language} -> English: {sets}", files)


_RO_EN_FILES = {
    "train": ("wmt16_ro_en/europarl_toy10k.ro", "wmt16_ro_en/europarl_toy10k.en"),
    "dev": ("wmt16_ro_en/newsdev2016.ro", "wmt16_ro_en/newsdev2016.en"),
    "test": ("wmt16_ro_en/newstest2016.ro", "wmt16_ro_en/newstest2016.en"),
    "flores": ("flores101_devtest/ron.devtest", "flores101_devtest/eng.devtest"),
}

_D2T = ("train", "dev", "test")
TASKS: dict[str, TaskSpec] = {
    spec.name: spec
    for spec in (
        TaskSpec("e2e", "E2E NLG: restaurant meaning representation -> text", _D2T, _read_e2e),
        TaskSpec("dart", "DART: linearised RDF triples -> text", _D2T, _read_dart),
        TaskSpec("webnlg", "WebNLG 2017: linearised DBpedia triples -> text", _D2T, _read_webnlg),
        TaskSpec("overnight", "OVERNIGHT: lambda-DCS logical form -> utterance", _D2T, _read_overnight),
        _multi30k_spec("fr", "fra", "French"),
        _multi30k_spec("de", "deu", "German"),
        _multi30k_spec("cs", "ces", "Czech"),
        _translation_spec(
            "ro-en",
            "Romanian -> English: WMT16 (Europarl sample, newsdev/newstest2016), FLORES-101",
            _RO_EN_FILES,
        ),
    )
}


def load_task(
    task: str,
    split: str,
    data_dir: str | Path | None = None,
    limit: int | None = None,
    *,
    exclude_e2e: bool = False,
) -> TaskSplit:
    """Load one split of a built-in task.

    `data_dir` is resolved by `resolve_data_dir`. `limit` keeps the first N distinct sources.
    `exclude_e2e` (DART only) drops DART's rows converted from E2E (its `source` field is "e2e").
    Raises ConfigError for an unknown task or split, DataNotFoundError for a missing file and
    DataFormatError for a malformed one.
    """
    spec = TASKS.get(task)
    if spec is None:
        raise ConfigError(f"unknown task '{task}': known tasks are {', '.join(TASKS)}")
    if split not in spec.splits:
        raise ConfigError(f"task '{task}' has no split '{split}': its splits are {', '.join(spec.splits)}")
    read = spec.read
    if exclude_e2e:
        if task != "dart":
            raise ConfigError(
                f"exclude_e2e applies only to task 'dart' (it has E2E-derived rows), not '{task}'"
            )
        read = functools.partial(_read_dart, exclude_e2e=True)
    root = resolve_data_dir(data_dir)
    return build_split(task, split, read(root, split), limit)
