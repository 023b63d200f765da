"""Typed errors of the adapter layer: one class per meaning.

``InputtuneError`` is the root of every error a user can cause (a bad file, a bad option, a bad
input); the other layers (``server/errors.py``, ``training/errors.py``) subclass it. The server maps
each class to one HTTP status in one place (``server/api/errors.py``), the CLI to one exit code
(``server/cli/errors.py``); anything else is a bug. Messages are written for the person who has to
fix the problem.
"""

from __future__ import annotations


class InputtuneError(Exception):
    """Base class of every error a user (a request, a file, an option) can cause."""


# ---------------------------------------------------------------------------- adapters


class AdapterError(InputtuneError):
    """Base class of every error about an adapter."""


class AdapterNotFoundError(AdapterError, LookupError):
    """No adapter of that name exists where we looked."""


class InvalidAdapterNameError(AdapterError, ValueError):
    """The name is not a valid adapter name (it could escape the adapter folder)."""


class AdapterFormatError(AdapterError, ValueError):
    """The file is not a valid inputtune adapter file."""


class NotSafetensorsError(AdapterFormatError):
    """The bytes are not a safetensors file at all (truncated, a pickle, random bytes)."""


class MissingMetadataError(AdapterFormatError):
    """A safetensors file without the inputtune config in its metadata."""


class UnsupportedFormatVersionError(AdapterFormatError):
    """The file was written by a format version this code cannot read."""


class AdapterConfigError(AdapterFormatError):
    """The config is invalid: unknown keys, bad values, inconsistent fields."""


class TensorMismatchError(AdapterFormatError):
    """Tensor names, shapes or dtypes do not match what the config says."""


class NonFiniteWeightsError(AdapterFormatError):
    """A tensor holds NaN or infinity."""


class IncompatibleAdapterError(AdapterError):
    """The adapter is valid but was made for another base model."""


class AdapterCapacityError(AdapterError):
    """The adapter does not fit the bank it should be loaded into."""


class AdapterUnreadableError(AdapterError):
    """The adapter file (or its folder) exists but cannot be read: permissions, a folder where a file
    should be, an I/O error. The server's fault, not the request's."""


class AdapterWriteError(AdapterError):
    """An adapter file could not be written (a read-only folder, permissions); nothing was changed."""


class StorageFullError(AdapterWriteError):
    """An adapter file could not be written because the disk (or a quota) is full; nothing was changed."""


# ---------------------------------------------------------------------------- base model and inputs


class BaseModelError(InputtuneError):
    """The base model could not be loaded or is not supported."""


class InvalidParametersError(InputtuneError, ValueError):
    """Decoding parameters that cannot be honoured (out of range, or contradicting each other)."""


class InvalidInputError(InputtuneError, ValueError):
    """An input the model cannot take."""


class InputTooLongError(InvalidInputError):
    """Prompt + input (+ output for decoder-only bases) exceed what the model or the caller allows."""
