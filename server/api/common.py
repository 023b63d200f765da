"""What every generation front end (native/TGI, OpenAI) checks the same way: the server's caps, the
inputs, and which adapter a request names."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable
from typing import Any, TypeVar

from fastapi import Request

from adapters import GenerationParams, InvalidParametersError, validate_name
from adapters.io import NAME_RE

from ..errors import ClientGoneError, InvalidRequestError, TooManyInputsError
from ..settings import ServerSettings
from .schemas import ErrorBody

T = TypeVar("T")

# every status a route's error can have (server.api.errors maps the exceptions to them)
ERROR_STATUSES = (400, 401, 403, 404, 413, 422, 429, 499, 500, 503, 507)
ERRORS: dict[int | str, dict[str, Any]] = {code: {"model": ErrorBody} for code in ERROR_STATUSES}
# what validate_name enforces (with its own message), said in the schema too
ADAPTER_NAME_SCHEMA = {"pattern": NAME_RE.pattern, "maxLength": 128}


async def while_connected(request: Request, work: Awaitable[T]) -> T:
    """``work``'s result while the client waits for it. A client that disconnects cancels it (its rows
    leave the queue or the batch) and the request counts with status 499 (ClientGoneError)."""
    task = asyncio.ensure_future(work)
    gone = asyncio.ensure_future(_disconnect(request))
    try:
        await asyncio.wait({task, gone}, return_when=asyncio.FIRST_COMPLETED)
    except asyncio.CancelledError:  # the server itself cancels this request (shutdown)
        task.cancel()
        raise
    finally:
        gone.cancel()
    if task.done():
        return task.result()
    task.cancel()
    await asyncio.wait({task})  # the cancellation has run: the rows are out of the queue and batch
    raise ClientGoneError("the client went away before its answer was ready")


async def _disconnect(request: Request) -> None:
    """Return when the client disconnects (the request's body has been read already)."""
    while (await request.receive())["type"] != "http.disconnect":
        pass


# What JSON Schema's "\S" counts as white space (ECMAScript's), so that the schema's rule for a
# non-empty text and check_texts's are the same rule
WHITESPACE = " \t\n\v\f\r\u00a0\u1680\u2000\u2001\u2002\u2003\u2004\u2005\u2006\u2007\u2008\u2009\u200a\u2028\u2029\u202f\u205f\u3000\ufeff"


def within_caps(
    params: GenerationParams, settings: ServerSettings, requested_min: int = 0
) -> GenerationParams:
    """``params`` if this server allows them (InvalidParametersError otherwise); ``requested_min`` is
    the minimum length as asked (before it was cut to the maximum)."""
    if requested_min > settings.max_new_tokens:
        raise InvalidParametersError(
            f"a minimum of {requested_min} new tokens exceeds this server's cap of {settings.max_new_tokens}"
        )
    if params.max_new_tokens > settings.max_new_tokens:
        raise InvalidParametersError(
            f"max_new_tokens={params.max_new_tokens} exceeds this server's cap of {settings.max_new_tokens}: "
            "ask for fewer tokens"
        )
    if params.num_beams > settings.max_num_beams:
        raise InvalidParametersError(
            f"num_beams={params.num_beams} exceeds this server's cap of {settings.max_num_beams}"
        )
    return params


def check_texts(texts: list[str], settings: ServerSettings, what: str = "inputs") -> list[str]:
    """The request's texts if there are some, not too many, none empty."""
    if not texts:
        raise InvalidRequestError(f"{what} is an empty list: send at least one text")
    if len(texts) > settings.max_inputs_per_request:
        raise TooManyInputsError(
            f"{len(texts)} inputs in one request exceed the cap of "
            f"{settings.max_inputs_per_request}: split the list"
        )
    for i, text in enumerate(texts):
        if not text.strip(WHITESPACE):
            raise InvalidRequestError(f"input {i} is empty: send non-empty text")
    return texts


def adapter_name(query: str | None, body: str | None) -> str | None:
    """The adapter a request names by ``?adapter=`` or ``parameters.adapter_id`` (None: the base)."""
    if query is not None and body is not None and query != body:
        raise InvalidRequestError(
            f"?adapter={query!r} and parameters.adapter_id={body!r} name different adapters: send one"
        )
    name = query if query is not None else body
    return None if name is None else validate_name(name)
