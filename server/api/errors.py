"""Errors -> HTTP status codes, in one place. Every error body is {"error": ..., "error_type": ...}."""

from __future__ import annotations

import logging
from typing import cast

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.routing import BaseRoute, Match

from adapters import (
    AdapterFormatError,
    AdapterNotFoundError,
    AdapterUnreadableError,
    AdapterWriteError,
    IncompatibleAdapterError,
    InputTooLongError,
    InvalidAdapterNameError,
    InvalidInputError,
    InvalidParametersError,
    StorageFullError,
)

from ..errors import (
    AdminDisabledError,
    BatchFailedError,
    ClientGoneError,
    CredentialsInUrlError,
    DeviceOutOfMemoryError,
    ForbiddenError,
    InvalidRequestError,
    NotReadyError,
    OverloadedError,
    QueueFullError,
    RequestTimeoutError,
    TooManyInputsError,
    UnauthorizedError,
    UnsupportedConversationError,
    UploadTooLargeError,
)

log = logging.getLogger(__name__)

# (exception class, status, error_type, extra headers), most specific first. Only the project's own
# classes are here: any other exception is a bug and answers 500 with its trace in the log.
MAPPING: list[tuple[type[BaseException], int, str, dict[str, str] | None]] = [
    (AdapterNotFoundError, 404, "adapter_not_found", None),
    (InvalidAdapterNameError, 422, "invalid_adapter_name", None),
    (IncompatibleAdapterError, 422, "incompatible_adapter", None),
    (AdapterFormatError, 422, "invalid_adapter_file", None),
    (InputTooLongError, 413, "input_too_long", None),
    (TooManyInputsError, 413, "too_many_inputs", None),
    (UploadTooLargeError, 413, "upload_too_large", None),
    (InvalidParametersError, 422, "invalid_parameters", None),
    (InvalidRequestError, 422, "invalid_request", None),
    (InvalidInputError, 422, "invalid_request", None),
    (UnsupportedConversationError, 400, "invalid_conversation", None),
    (AdminDisabledError, 403, "admin_disabled", None),
    (ForbiddenError, 403, "forbidden", None),
    (UnauthorizedError, 401, "unauthorized", {"WWW-Authenticate": "Bearer"}),
    (CredentialsInUrlError, 400, "credentials_in_url", None),
    (QueueFullError, 429, "overloaded", {"Retry-After": "1"}),
    (OverloadedError, 429, "overloaded", {"Retry-After": "1"}),
    (DeviceOutOfMemoryError, 503, "out_of_memory", {"Retry-After": "1"}),
    (ClientGoneError, 499, "client_closed_request", None),
    (NotReadyError, 503, "not_ready", {"Retry-After": "5"}),
    (RequestTimeoutError, 503, "timeout", {"Retry-After": "5"}),
    (BatchFailedError, 500, "generation_failed", None),
    (AdapterUnreadableError, 500, "adapter_unreadable", None),
    (StorageFullError, 507, "insufficient_storage", None),
    (AdapterWriteError, 500, "adapter_write_failed", None),
]


def classify(error: BaseException) -> tuple[int, str, str, dict[str, str] | None]:
    """(status, error_type, message, headers) of any exception; unknown ones are 500 bugs."""
    for cls, status, error_type, headers in MAPPING:
        if isinstance(error, cls):
            retry_after = getattr(error, "retry_after_s", None)  # an estimate beats the default
            if retry_after is not None:
                headers = (headers or {}) | {"Retry-After": str(retry_after)}
            return status, error_type, str(error), headers
    return (
        500,
        "internal_error",
        "internal server error (this is a bug; the trace is in the server log)",
        None,
    )


def body(request: Request, status: int, error_type: str, message: str) -> dict:
    """The error body in the request's API shape: OpenAI's on /v1, the native one elsewhere."""
    if request.url.path.startswith("/v1/"):
        return {"error": {"message": message, "type": error_type, "param": None, "code": status}}
    return {"error": message, "error_type": error_type}


def error_response(request: Request, error: BaseException) -> JSONResponse:
    status, error_type, message, headers = classify(error)
    if status == 500:
        log.error("unhandled error", exc_info=error)
    return JSONResponse(body(request, status, error_type, message), status_code=status, headers=headers)


def _validation_message(exc: RequestValidationError) -> str:
    parts = []
    for err in exc.errors():
        where = ".".join(str(p) for p in err.get("loc", ()) if p != "body")
        parts.append(f"{where or 'body'}: {err.get('msg', 'invalid')}")
    return "invalid request: " + "; ".join(parts)


def allowed_methods(app: FastAPI, request: Request) -> list[str]:
    """The methods some route of the app takes at this request's path."""
    methods: set[str] = set()
    for route in app.router.routes:
        match, _ = route.matches({**request.scope, "method": "GET", "type": "http"})
        if match != Match.NONE and isinstance(route, BaseRoute) and getattr(route, "methods", None):
            methods |= set(route.methods)  # type: ignore[attr-defined]
    return sorted(methods)


def install(app: FastAPI) -> None:
    @app.exception_handler(RequestValidationError)
    async def _validation(request: Request, exc: RequestValidationError) -> JSONResponse:
        return JSONResponse(body(request, 422, "invalid_request", _validation_message(exc)), status_code=422)

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        error_type = {404: "not_found", 405: "method_not_allowed"}.get(exc.status_code, "http_error")
        headers = getattr(exc, "headers", None)
        if exc.status_code == 405:  # every method of the path, not just those of the first route found
            headers = {"Allow": ", ".join(allowed_methods(app, request))}
        return JSONResponse(
            body(request, exc.status_code, error_type, str(exc.detail)),
            status_code=exc.status_code,
            headers=headers,
        )

    async def _known(request: Request, exc: Exception) -> JSONResponse:
        return error_response(request, exc)

    # Only the project's own classes: anything else is a bug that RequestObserver (server/app.py)
    # answers with a 500 on a connection that stays usable.
    for cls, *_ in MAPPING:
        app.add_exception_handler(cast(type[Exception], cls), _known)
