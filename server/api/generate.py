"""The native generation routes, which are TGI's: ``POST /generate``, ``POST /generate_stream``, and
``POST /`` (where TGI, LoRAX and Hugging Face clients post: ``stream`` picks one of the other two).

The adapter is ``?adapter=NAME`` or ``parameters.adapter_id`` (TGI/LoRAX); none means the plain base.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from typing import Annotated, Any

from fastapi import APIRouter, Query, Request
from sse_starlette import EventSourceResponse

from adapters import GenerationOutput, GenerationParams, decode_text
from adapters.decoding.params import TokenLogprob
from adapters.decoding.sampling import StreamToken
from adapters.text import IncrementalDecoder

from ..engine.engine import RowStream
from ..engine.types import RowResult
from ..errors import InvalidRequestError
from .common import ADAPTER_NAME_SCHEMA, ERRORS, adapter_name, check_texts, while_connected, within_caps
from .deps import Caller, CallerDep, EngineDep, MetricsDep, SettingsDep
from .schemas import (
    FINISH_REASONS,
    AlternativeToken,
    CompatRequest,
    Details,
    ErrorBody,
    GenerateRequest,
    GenerateResponse,
    StreamDetails,
    StreamRequest,
    StreamResponse,
    Token,
    sse_schema,
)
from .streaming import sse_response

router = APIRouter()
AdapterQuery = Annotated[
    str | None,
    Query(description="Adapter name; omit for the plain base model", json_schema_extra=ADAPTER_NAME_SCHEMA),
]


def alternatives(tokenizer, top: list[tuple[int, float]]) -> list[AlternativeToken]:
    return [AlternativeToken(id=i, text=decode_text(tokenizer, [i]), logprob=lp) for i, lp in top]


def stream_token(tokenizer, token: StreamToken) -> Token:
    lp = token.logprob
    return Token(
        id=token.id,
        text=token.text,
        logprob=None if lp is None else lp.logprob,
        special=token.special,
        alternative_tokens=None if lp is None or not lp.top else alternatives(tokenizer, lp.top),
    )


def output_tokens(tokenizer, out: GenerationOutput) -> list[Token]:
    """Each generated token with the text it adds (the texts concatenate to the output's text)."""
    decoder = IncrementalDecoder(tokenizer)
    pieces = [decoder.add(t) for t in out.token_ids]
    if pieces:
        pieces[-1] += decoder.finish()
    logprobs: list[TokenLogprob | None] = (
        [None] * len(out.token_ids) if out.logprobs is None else list(out.logprobs)
    )
    return [
        Token(
            id=t,
            text=piece,
            logprob=None if lp is None else lp.logprob,
            special=t in tokenizer.all_special_ids,
            alternative_tokens=None if lp is None or not lp.top else alternatives(tokenizer, lp.top),
        )
        for t, piece, lp in zip(out.token_ids, pieces, logprobs, strict=True)
    ]


def details(result: RowResult, tokenizer, with_tokens: bool) -> Details:
    out = result.output
    extra = {}
    if with_tokens:
        extra = {
            "prompt_tokens": out.input_tokens,
            "skipped_tokens": 0,
            "prefill": [],
            "tokens": output_tokens(tokenizer, out),
        }
    return Details(
        finish_reason=FINISH_REASONS[out.finish_reason],
        input_tokens=out.input_tokens,
        generated_tokens=out.generated_tokens,
        queue_ms=round(result.queue_s * 1000, 3),
        inference_ms=round(result.inference_s * 1000, 3),
        batch_rows=result.batch_rows,
        batch_adapters=result.batch_adapters,
        seed=out.seed,
        **extra,
    )


def _params(body: GenerateRequest | StreamRequest, settings) -> GenerationParams:
    p = body.parameters
    return within_caps(p.generation_params(settings.default_max_new_tokens), settings, p.min_new_tokens)


def _request_adapter(
    body: GenerateRequest | StreamRequest, adapter: str | None, who: Caller, request: Request
) -> str | None:
    name = adapter_name(adapter, body.parameters.adapter_id)
    request.state.adapter = name
    who.check(name)
    return name


async def _run(body: GenerateRequest, adapter: str | None, engine, settings, request: Request, who: Caller):
    """The request's adapter and its results (the non-streamed routes); a client that leaves cancels it."""
    name = _request_adapter(body, adapter, who, request)
    texts = check_texts([body.inputs] if isinstance(body.inputs, str) else list(body.inputs), settings)
    params = _params(body, settings)
    truncate = body.parameters.truncate or False
    return name, await while_connected(request, engine.generate(name, texts, params, truncate=truncate))


@router.post("/generate", response_model=GenerateResponse | list[GenerateResponse], responses=ERRORS)
async def generate(
    request: Request,
    body: GenerateRequest,
    engine: EngineDep,
    settings: SettingsDep,
    who: CallerDep,
    adapter: AdapterQuery = None,
):
    """Generate with one adapter (or the base model). List inputs give a list of results. ``details``
    always holds the batch facts; with ``"details": true`` also each token (TGI's fields)."""
    name, results = await _run(body, adapter, engine, settings, request, who)
    with_tokens = body.parameters.details
    responses = [
        GenerateResponse(
            generated_text=r.output.text, adapter=name, details=details(r, engine.tokenizer, with_tokens)
        )
        for r in results
    ]
    return responses[0] if isinstance(body.inputs, str) else responses


SSE: dict[int | str, dict[str, Any]] = {
    200: {"content": {"text/event-stream": {"schema": sse_schema(StreamResponse, ErrorBody)}}}
}


@router.post("/generate_stream", responses=ERRORS | SSE, response_class=EventSourceResponse)
async def generate_stream(
    request: Request,
    body: StreamRequest,
    engine: EngineDep,
    settings: SettingsDep,
    metrics: MetricsDep,
    who: CallerDep,
    adapter: AdapterQuery = None,
):
    """Server-sent events, one per token: ``data:{"index", "token": {"id", "text", "logprob", "special"},
    "generated_text": null, "details": null}``; the last event also holds the whole ``generated_text``
    and, with ``"details": true``, ``details`` {finish_reason, generated_tokens, seed, input_length}.
    Tokens are sent as each decoder step makes them (continuous batching: T5/mT5 bases, no beams); on
    the static path (beam search, GPT-2 bases) they all come at the end. An error during the stream is a
    last event ``data:{"error", "error_type"}``."""
    name = _request_adapter(body, adapter, who, request)
    check_texts([body.inputs], settings)
    params = _params(body, settings)
    (stream,) = await engine.submit(
        name, [body.inputs], params, body.parameters.truncate or False, stream=True
    )
    return sse_response(
        request,
        tgi_events(stream, engine.tokenizer, body.parameters.details, metrics),
        lambda status, error_type, message: {"error": message, "error_type": error_type},
    )


async def tgi_events(stream: RowStream, tokenizer, with_details: bool, metrics) -> AsyncIterator[dict]:
    index = 0
    async for token, last in stream.tokens():
        if index == 0:
            metrics.time_to_first_token.observe(time.monotonic() - stream.row.arrival)
        index += 1
        event = StreamResponse(index=index, token=stream_token(tokenizer, token))
        if last:
            out = (await stream.result()).output
            event.generated_text = out.text
            if with_details:
                event.details = StreamDetails(
                    finish_reason=FINISH_REASONS[out.finish_reason],
                    generated_tokens=out.generated_tokens,
                    input_length=out.input_tokens,
                    prompt_tokens=out.input_tokens,
                    seed=out.seed,
                )
        yield event.model_dump()


@router.post(
    "/",
    response_model=list[GenerateResponse],
    responses=ERRORS | {200: {"content": {"application/json": {}, "text/event-stream": {}}}},
)
async def compat(
    request: Request,
    body: CompatRequest,
    engine: EngineDep,
    settings: SettingsDep,
    metrics: MetricsDep,
    who: CallerDep,
    adapter: AdapterQuery = None,
):
    """Where TGI, LoRAX and Hugging Face clients post: ``"stream": true`` answers as /generate_stream,
    otherwise a list of results as TGI does on this route (``details`` only with ``"details": true``)."""
    if body.stream:
        if not isinstance(body.inputs, str):
            raise InvalidRequestError("a stream takes one input: send inputs as a string")
        one = StreamRequest(inputs=body.inputs, parameters=body.parameters)
        return await generate_stream(request, one, engine, settings, metrics, who, adapter)
    name, results = await _run(body, adapter, engine, settings, request, who)
    with_tokens = body.parameters.details
    return [
        GenerateResponse(
            generated_text=r.output.text,
            adapter=name,
            details=details(r, engine.tokenizer, True) if with_tokens else None,
        )
        for r in results
    ]
