"""Task data for training and evaluation: (source, target) pairs and multi-reference eval items.

`load_task(task, split)` reads a built-in task from the shared data folder (see `TASKS`),
`load_user_files(path)` reads a user's JSONL/CSV pairs. (Pretraining's books are read by
`training.pretrain.books`.) The data errors live in `training.errors` and are re-exported here.
"""

from training.data.core import (
    DATA_DIR_ENV,
    EvalItem,
    Example,
    TaskSplit,
    normalize_whitespace,
    resolve_data_dir,
)
from training.data.tasks import TASKS, TaskSpec, linearize_triples, load_task
from training.data.user_files import load_user_files
from training.errors import DataFormatError, DataNotFoundError

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
    "load_task",
    "load_user_files",
    "normalize_whitespace",
    "resolve_data_dir",
]
