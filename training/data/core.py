"""Records, data-folder resolution and the grouping shared by every loader.

A loader reads raw (source, target) pairs; `build_split` normalises whitespace, drops pairs
with an empty side and groups references by source for evaluation.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from training.errors import ConfigError, DataFormatError, DataNotFoundError

DATA_DIR_ENV = "INPUTTUNE_DATA_DIR"  # training.settings.TrainingSettings.data_dir, named for messages
HOW_TO_POINT = f"pass --data-dir (data_dir=...) or set {DATA_DIR_ENV} to the folder holding e2e/, dart/, ..."


@dataclass(frozen=True)
class Example:
    """One training pair; both sides are whitespace-normalised and non-empty."""

    source: str
    target: str


@dataclass(frozen=True)
class EvalItem:
    """One evaluation input with all its distinct references, in order of first appearance."""

    source: str
    references: tuple[str, ...]


@dataclass
class TaskSplit:
    """One split of one task.

    `examples` holds one Example per data row (duplicate rows kept, as in the files), for training.
    `items` holds one EvalItem per distinct source, in order of first appearance, for evaluation.
    """

    task: str
    split: str
    examples: list[Example]
    items: list[EvalItem]


def normalize_whitespace(text: str) -> str:
    """Strip and collapse every run of Unicode whitespace (tabs, newlines, NBSP, ...) to one space."""
    return " ".join(text.split())


def build_split(
    task: str, split: str, pairs: Iterable[tuple[str, str]], limit: int | None = None
) -> TaskSplit:
    """Normalise raw pairs and group them by source.

    Pairs whose source or target is empty after normalisation are dropped (one such row exists in the
    real data: an empty English line of Europarl). `limit` keeps the first `limit` distinct sources,
    and only the examples of those sources.
    """
    if limit is not None and limit < 1:
        raise ConfigError(f"limit must be a positive number of sources or None, got {limit}")
    examples: list[Example] = []
    references: dict[str, dict[str, None]] = {}  # source -> ordered set of references
    for raw_source, raw_target in pairs:
        source, target = normalize_whitespace(raw_source), normalize_whitespace(raw_target)
        if not source or not target:
            continue
        refs = references.get(source)
        if refs is None:
            if limit is not None and len(references) >= limit:
                continue
            refs = references[source] = {}
        refs[target] = None
        examples.append(Example(source, target))
    items = [EvalItem(source, tuple(refs)) for source, refs in references.items()]
    return TaskSplit(task=task, split=split, examples=examples, items=items)


def _repo_root() -> Path:
    # This file is <repo>/training/data/core.py.
    return Path(__file__).resolve().parents[2]


def _data_dir_setting() -> Path | None:
    """$INPUTTUNE_DATA_DIR, read through the settings class (only when no folder is given)."""
    from training.settings import TrainingSettings  # here, not at the top: see training/settings.py

    return TrainingSettings().data_dir


def resolve_data_dir(data_dir: str | Path | None = None) -> Path:
    """Find the shared data folder.

    Order: the explicit argument, else $INPUTTUNE_DATA_DIR, else ../shared/data relative to the current
    directory, else <repo root>/../shared/data. An explicit argument or a set environment variable is
    used as given (no fallback to the defaults), so a typo never silently loads other data.
    Raises DataNotFoundError naming the paths tried.
    """
    if data_dir is not None:
        candidates = [(Path(data_dir), "the data_dir argument")]
    elif (from_env := _data_dir_setting()) is not None:
        candidates = [(from_env, f"${DATA_DIR_ENV}")]
    else:
        candidates = [
            (Path.cwd() / ".." / "shared" / "data", "default relative to the current directory"),
            (_repo_root().parent / "shared" / "data", "default relative to the repository"),
        ]
    for path, _ in candidates:
        if path.is_dir():
            return path.resolve()
    tried = "; ".join(f"{path} ({why})" for path, why in candidates)
    raise DataNotFoundError(f"data folder not found, tried: {tried}. To fix it, {HOW_TO_POINT}")


def require_file(path: Path) -> Path:
    """Return `path` if it is a file, else raise DataNotFoundError naming it."""
    if not path.is_file():
        raise DataNotFoundError(f"expected data file {path} is missing: {HOW_TO_POINT}")
    return path


def read_lines(path: Path) -> list[str]:
    """Lines of a UTF-8 text file, without the line ends.

    Splits on "\\n" only: str.splitlines() would also split inside sentences at U+2028, U+0085,
    form feeds and the like, and break the line alignment of parallel files.
    """
    text = require_file(path).read_text(encoding="utf-8")
    lines = text.split("\n")
    if lines and lines[-1] == "":
        lines.pop()
    return [line.removesuffix("\r") for line in lines]


def read_parallel(source_path: Path, target_path: Path) -> list[tuple[str, str]]:
    """Line-aligned (source, target) pairs from two text files with the same number of lines."""
    sources, targets = read_lines(source_path), read_lines(target_path)
    if len(sources) != len(targets):
        raise DataFormatError(
            f"{source_path} has {len(sources)} lines but {target_path} has {len(targets)}: "
            "parallel files must be line-aligned; restore the original files"
        )
    return list(zip(sources, targets, strict=True))


def read_jsonl(path: Path) -> Iterator[tuple[int, Any]]:
    """(1-based line number, parsed value) for each non-blank line of a JSONL file."""
    with require_file(path).open("rb") as f:
        for line_number, raw in enumerate(f, start=1):
            try:
                line = raw.decode("utf-8")
            except UnicodeDecodeError as e:
                raise DataFormatError(f"{path}, line {line_number}: not valid UTF-8 ({e.reason})") from e
            if not line.strip():
                continue
            try:
                yield line_number, json.loads(line)
            except json.JSONDecodeError as e:
                raise DataFormatError(f"{path}, line {line_number}: not valid JSON ({e.msg})") from e
