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
    """A missing or wrong admin key, or an API key that may not use this adapter."""


class UnauthorizedError(InputtuneError):
    """The inference routes need an API key and the request has none, or a wrong one."""


class CredentialsInUrlError(InputtuneError):
    """A credential sent in the URL's query string (URLs end up in access logs)."""


class QueueFullError(InputtuneError):
    """The queue holds ``max_rows`` rows already; the caller should retry later."""

    def __init__(self, pending: int, limit: int, retry_after_s: int = 1) -> None:
        super().__init__(f"the server queue is full ({pending} of {limit} rows waiting): retry later")
        self.pending = pending
        self.limit = limit
        self.retry_after_s = retry_after_s


class OverloadedError(InputtuneError):
    """The request would wait longer than ``max_queue_wait_s`` for the device: refused at once, with
    an honest Retry-After, rather than queued for a long wait."""

    def __init__(self, expected_s: float, limit_s: float, retry_after_s: int) -> None:
        super().__init__(
            f"the server is overloaded: this request would wait about {expected_s:.1f} s for the device "
            f"(the limit is {limit_s:g} s): retry in {retry_after_s} s"
        )
        self.retry_after_s = retry_after_s


class ClientGoneError(InputtuneError):
    """The client went away before its answer was ready (its rows were dropped)."""


class NotReadyError(InputtuneError):
    """The model is still loading (or the server is shutting down)."""


class RequestTimeoutError(InputtuneError):
    """A request waited longer than request_timeout_s."""


class DeviceOutOfMemoryError(InputtuneError):
    """The device ran out of memory running the batch that held this request; retry (the server freed
    what it could and carries on)."""

    retry_after_s = 1


class BatchFailedError(Exception):
    """The model call holding this row failed; the trace is in the server log (a 500: not the
    client's fault)."""
