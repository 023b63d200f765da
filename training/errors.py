"""Errors of the training layer: one class per meaning. ``server/cli/errors.py`` maps each to an
exit code: every ``TrainingError`` is bad input (2, like every ``adapters.InputtuneError``), a diverged
run 1, a failed gate 3.

Where callers used to catch a built-in error (``FileNotFoundError`` for missing data, ``ValueError`` for
a bad option), the class derives from it too, so that ``except ValueError`` still sees it.
"""

from __future__ import annotations

from adapters import InputtuneError


class TrainingError(InputtuneError):
    """Bad input to training, evaluation or pretraining: the message says what to fix."""


class DataNotFoundError(TrainingError, FileNotFoundError):
    """The data folder, or a file a loader expects in it, does not exist."""


class DataFormatError(TrainingError, ValueError):
    """A data file exists but a line or field in it is malformed, or it holds nothing to train on."""


class ConfigError(TrainingError, ValueError):
    """Options that cannot work: an invalid ``AdapterTrainConfig``, an unknown task or split, a device
    that is not there, options that contradict each other."""


class PresetError(TrainingError, ValueError):
    """A pretraining preset file, a ``--set`` override or the recipe they make is malformed."""


class CheckpointError(TrainingError, ValueError):
    """A checkpoint to resume from is missing, of another format version, or made for another run."""


class TrainingDivergedError(Exception):
    """The loss became NaN or infinite: the run stops (exit code 1)."""


class GateFailedError(Exception):
    """A pretrained base (or its tokenizer) failed its gate (exit code 3); the message says which
    checks failed."""
