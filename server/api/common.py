"""What every generation front end (native/TGI, OpenAI) checks the same way: the server's caps, the
inputs, and which adapter a request names."""

from __future__ import annotations

from typing import Any

from adapters import GenerationParams, InvalidParametersError, validate_name

from ..errors import InvalidRequestError, TooManyInputsError
from ..settings import ServerSettings
from .schemas import ErrorBody

ERRORS: dict[int | str, dict[str, Any]] = {
    code: {"model": ErrorBody} for code in (403, 404, 413, 422, 429, 500, 503)
}


def within_caps(params: GenerationParams, settings: ServerSettings) -> GenerationParams:
    """``params`` if this server allows them (InvalidParametersError otherwise)."""
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
        if not text.strip():
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
