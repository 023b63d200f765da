"""Errors of the serving layer: one class per meaning. ``server/api/errors.py`` maps each to its HTTP
status, ``server/cli/errors.py`` to an exit code; anything else reaching a client is a bug (500)."""

from __future__ import annotations

from adapters import InputtuneError


class SettingsError(InputtuneError):
    """The server settings are invalid or contradict each other."""


class InvalidRequestError(InputtuneError):
    """A request that is well-formed JSON but asks for something the API does not take."""


class UnsupportedConversationError(InputtuneError):
    """A chat request an adapter cannot take (more than one user turn, a system prompt, images)."""


class TooManyInputsError(InputtuneError):
    """More texts in one request than ``max_inputs_per_request``."""


class UploadTooLargeError(InputtuneError):
    """An adapter upload larger than ``max_upload_mb``."""


class AdminDisabledError(InputtuneError):
    """The admin API is off (no admin key configured)."""


class ForbiddenError(InputtuneError):
    """A missing or wrong key."""


class QueueFullError(InputtuneError):
    """The queue holds ``max_queue`` rows already; the caller should retry later."""

    def __init__(self, pending: int, limit: int) -> None:
        super().__init__(f"the server queue is full ({pending} of {limit} rows waiting): retry later")
        self.pending = pending
        self.limit = limit


class NotReadyError(InputtuneError):
    """The model is still loading (or the server is shutting down)."""


class RequestTimeoutError(InputtuneError):
    """A request waited longer than request_timeout_s."""


class BatchFailedError(Exception):
    """The model call holding this row failed; the trace is in the server log (a 500: not the
    client's fault)."""
