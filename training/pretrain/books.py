"""Plain English books for pretraining (pretrain_en/books in the shared data folder), read as they are."""

from __future__ import annotations

from pathlib import Path

from training.data.core import HOW_TO_POINT, resolve_data_dir
from training.errors import DataNotFoundError


def load_books(data_dir: str | Path | None = None) -> list[tuple[str, str]]:
    """(file name, full text) for every `pretrain_en/books/*.txt`, sorted by file name.

    The text is returned unchanged (line wrapping and paragraph breaks kept); callers that want
    single-line training text apply `normalize_whitespace` to the pieces they cut.
    """
    folder = resolve_data_dir(data_dir) / "pretrain_en" / "books"
    paths = sorted(folder.glob("*.txt"))
    if not paths:
        raise DataNotFoundError(f"no books found: expected {folder}/*.txt; {HOW_TO_POINT}")
    return [(path.name, path.read_text(encoding="utf-8")) for path in paths]
