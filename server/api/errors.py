"""Errors -> HTTP status codes, in one place. Every error body is {"error": ..., "error_type": ...}."""

from __future__ import annotations

import logging
from typing import cast

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from adapters import (
    AdapterFormatError,
    AdapterNotFoundError,
    IncompatibleAdapterError,
    InvalidAdapterNameError,
)
from adapters import (
    InputTooLongError as ModelInputTooLongError,
)

from ..engine.batcher import QueueFullError
from ..engine.engine import InputTooLongError, NotReadyError, RequestTimeoutError
from ..engine.worker import BatchFailedError

log = logging.getLogger(__name__)


class ApiError(Exception):
    """An error raised by a route with its status and type already decided."""

    def __init__(self, status: int, error_type: str, message: str, headers: dict[str, str] | None = None):
        super().__init__(message)
        self.status = status
        self.error_type = error_type
        self.headers = headers


# (exception class, status, error_type, extra headers), most specific first
MAPPING: list[tuple[type[BaseException], int, str, dict[str, str] | None]] = [
    (AdapterNotFoundError, 404, "adapter_not_found", None),
    (InvalidAdapterNameError, 422, "invalid_adapter_name", None),
    (IncompatibleAdapterError, 422, "incompatible_adapter", None),
    (AdapterFormatError, 422, "invalid_adapter_file", None),
    (InputTooLongError, 413, "input_too_long", None),
    (ModelInputTooLongError, 413, "input_too_long", None),
    (QueueFullError, 429, "overloaded", {"Retry-After": "1"}),
    (NotReadyError, 503, "not_ready", {"Retry-After": "5"}),
    (RequestTimeoutError, 503, "timeout", {"Retry-After": "5"}),
    (BatchFailedError, 500, "generation_failed", None),
    (ValueError, 422, "invalid_parameters", None),
]


def classify(error: BaseException) -> tuple[int, str, str, dict[str, str] | None]:
    """(status, error_type, message, headers) of any exception; unknown ones are 500 bugs."""
    if isinstance(error, ApiError):
        return error.status, error.error_type, str(error), error.headers
    for cls, status, error_type, headers in MAPPING:
        if isinstance(error, cls):
            return status, error_type, str(error), headers
    return (
        500,
        "internal_error",
        "internal server error (this is a bug; the trace is in the server log)",
        None,
    )


def error_response(error: BaseException) -> JSONResponse:
    status, error_type, message, headers = classify(error)
    if status == 500:
        log.error("unhandled error", exc_info=error)
    return JSONResponse({"error": message, "error_type": error_type}, status_code=status, headers=headers)


def _validation_message(exc: RequestValidationError) -> str:
    parts = []
    for err in exc.errors():
        where = ".".join(str(p) for p in err.get("loc", ()) if p != "body")
        parts.append(f"{where or 'body'}: {err.get('msg', 'invalid')}")
    return "invalid request: " + "; ".join(parts)


def install(app: FastAPI) -> None:
    @app.exception_handler(RequestValidationError)
    async def _validation(request: Request, exc: RequestValidationError) -> JSONResponse:
        return JSONResponse(
            {"error": _validation_message(exc), "error_type": "invalid_request"}, status_code=422
        )

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        error_type = {404: "not_found", 405: "method_not_allowed"}.get(exc.status_code, "http_error")
        return JSONResponse(
            {"error": str(exc.detail), "error_type": error_type},
            status_code=exc.status_code,
            headers=getattr(exc, "headers", None),
        )

    async def _known(request: Request, exc: Exception) -> JSONResponse:
        return error_response(exc)

    handled: list[type[Exception]] = [
        ApiError,
        *(cast(type[Exception], entry[0]) for entry in MAPPING),
        Exception,
    ]
    for cls in handled:
        app.add_exception_handler(cls, _known)
