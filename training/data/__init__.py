"""Task data for training and evaluation: (source, target) pairs and multi-reference eval items.

`load_task(task, split)` reads a built-in task from the shared data folder (see `TASKS`),
`load_user_files(path)` reads a user's JSONL/CSV pairs, `load_books()` the pretraining books.
"""

from training.data.books import load_books
from training.data.core import (
    DATA_DIR_ENV,
    DataFormatError,
    DataNotFoundError,
    EvalItem,
    Example,
    TaskSplit,
    normalize_whitespace,
    resolve_data_dir,
)
from training.data.tasks import TASKS, TaskSpec, linearize_triples, load_task
from training.data.user_files import load_user_files

__all__ = [
    "DATA_DIR_ENV",
    "TASKS",
    "DataFormatError",
    "DataNotFoundError",
    "EvalItem",
    "Example",
    "TaskSpec",
    "TaskSplit",
    "linearize_triples",
    "load_books",
    "load_task",
    "load_user_files",
    "normalize_whitespace",
    "resolve_data_dir",
]
