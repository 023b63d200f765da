"""A user's own (source, target) pairs from a JSONL or CSV file, checked field by field."""

from __future__ import annotations

import csv
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from training.data.core import TaskSplit, build_split, normalize_whitespace, read_jsonl
from training.errors import DataFormatError, DataNotFoundError

FIELDS = ("source", "target")


def _checked(record: Any, path: Path, line: int) -> tuple[str, str]:
    if not isinstance(record, dict):
        raise DataFormatError(f"{path}, line {line}: expected an object with fields 'source' and 'target'")
    values = []
    for name in FIELDS:
        value = record.get(name)
        if value is None:
            raise DataFormatError(f"{path}, line {line}: field '{name}' is missing")
        if not isinstance(value, str):
            kind = type(value).__name__
            raise DataFormatError(f"{path}, line {line}: field '{name}' must be a string, got {kind}")
        if not normalize_whitespace(value):
            raise DataFormatError(f"{path}, line {line}: field '{name}' is empty")
        values.append(value)
    return values[0], values[1]


def _jsonl_pairs(path: Path) -> Iterator[tuple[str, str]]:
    for line, record in read_jsonl(path):
        yield _checked(record, path, line)


def _csv_pairs(path: Path) -> Iterator[tuple[str, str]]:
    try:
        with path.open(encoding="utf-8-sig", newline="") as f:
            reader = csv.DictReader(f)
            missing = [name for name in FIELDS if name not in (reader.fieldnames or [])]
            if missing:
                raise DataFormatError(
                    f"{path}, line 1: the CSV header must name the columns 'source' and 'target'; "
                    f"missing: {', '.join(missing)}"
                )
            line = 2  # first line of the next record; reader.line_num is the last line read so far
            for row in reader:
                yield _checked(row, path, line)
                line = reader.line_num + 1
    except UnicodeDecodeError as e:
        raise DataFormatError(f"{path}: not valid UTF-8 ({e.reason})") from e
    except csv.Error as e:
        raise DataFormatError(f"{path}: not valid CSV ({e})") from e


def load_user_files(path: str | Path, split: str = "user") -> TaskSplit:
    """Load (source, target) pairs from a `.jsonl` file (one object per line) or a `.csv` file with a header.

    Both fields must be non-empty strings; other fields are ignored. The task name is the file stem.
    Raises DataNotFoundError if the file is missing and DataFormatError, naming file, line and field,
    for anything malformed.
    """
    path = Path(path)
    if not path.is_file():
        raise DataNotFoundError(f"user data file {path} does not exist")
    suffix = path.suffix.lower()
    if suffix == ".jsonl":
        pairs = list(_jsonl_pairs(path))
    elif suffix == ".csv":
        pairs = list(_csv_pairs(path))
    else:
        raise DataFormatError(
            f"{path}: unknown file type '{suffix}'; use .jsonl or .csv with fields 'source' and 'target'"
        )
    if not pairs:
        raise DataFormatError(f"{path}: no examples found; expected rows with fields 'source' and 'target'")
    return build_split(path.stem, split, pairs)
