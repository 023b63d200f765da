"""Exit codes of every ``inputtune`` command and the one way a command reports an error.

Commands raise; ``main`` turns the error into one line on stderr and an exit code from ``EXIT_CODES``.
An exception that is not in the table is a bug and ends with Python's traceback.
"""

from __future__ import annotations

import sys

from adapters import InputtuneError
from training.errors import GateFailedError, TrainingDivergedError

EXIT_OK = 0
EXIT_FAILED = 1  # the job ran and failed: training diverged, a load test saw wrong answers
EXIT_USAGE = 2  # bad input: an option, a data file, a model or an adapter (the message says what to fix)
EXIT_GATE = 3  # `inputtune pretrain`: the base failed its gate
EXIT_INTERRUPTED = 130  # Ctrl-C (a training run saves a checkpoint first)

EXIT_CODES: list[tuple[type[BaseException], int]] = [
    (InputtuneError, EXIT_USAGE),
    (TrainingDivergedError, EXIT_FAILED),
    (GateFailedError, EXIT_GATE),
    (KeyboardInterrupt, EXIT_INTERRUPTED),
]

EPILOG = (
    f"exit codes: {EXIT_OK} done; {EXIT_FAILED} the job ran and failed (training diverged, a load test "
    f"saw wrong answers); {EXIT_USAGE} bad input (the message says what to fix); {EXIT_GATE} a pretrained "
    f"base failed its gate; {EXIT_INTERRUPTED} interrupted"
)


def error(message: object) -> None:
    """The one error line every command prints."""
    print(f"inputtune: error: {message}", file=sys.stderr)


def exit_code(exc: BaseException) -> int | None:
    """The exit code of an error the CLI reports, or None for a bug."""
    for cls, code in EXIT_CODES:
        if isinstance(exc, cls):
            return code
    return None
