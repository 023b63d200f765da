"""OpenAI-compatible routes: ``/v1/completions``, ``/v1/chat/completions``, ``/v1/models``.

``model`` names the adapter, as vLLM, LoRAX and the Gateway API inference extension route on it; the
served base model's id (``GET /v1/models`` lists it) or ``""`` asks for the plain base, explicitly. An
unknown name is a 404, never a silent base answer. Errors come in OpenAI's shape
(``{"error": {"message", "type", "param", "code"}}``) with the native API's status codes.

Sampling follows OpenAI: ``temperature`` defaults to 1 (sampling) and 0 is greedy; ``max_tokens``
defaults to 16 for completions and to the server's default for chat.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass
from typing import Any

from fastapi import APIRouter, Request
from pydantic import BaseModel

from adapters import (
    AdapterNotFoundError,
    GenerationOutput,
    GenerationParams,
    InvalidParametersError,
    validate_name,
)
from adapters.decoding.params import TokenLogprob
from adapters.decoding.sampling import StreamToken

from ..engine.engine import RowStream
from ..engine.types import RowResult
from ..errors import UnsupportedConversationError
from .common import ERROR_STATUSES, check_texts, while_connected, within_caps
from .deps import Caller, CallerDep, EngineDep, MetricsDep, SettingsDep
from .generate import output_tokens
from .openai_schemas import (
    AssistantMessage,
    ChatChoice,
    ChatCompletion,
    ChatCompletionRequest,
    ChatLogprobs,
    ChatTokenLogprob,
    Completion,
    CompletionChoice,
    CompletionLogprobs,
    CompletionRequest,
    ModelCard,
    ModelList,
    OpenAIError,
    SamplingFields,
    TopLogprob,
    Usage,
)
from .schemas import sse_schema
from .streaming import sse_response

router = APIRouter(prefix="/v1")
ERRORS: dict[int | str, dict[str, Any]] = {code: {"model": OpenAIError} for code in ERROR_STATUSES}
# with "stream": true the answer is server-sent chunks (a completion's or a chat's), then [DONE]
STREAMED = {"type": "object", "required": ["id", "object", "created", "model", "choices"]}
SSE: dict[int | str, dict[str, Any]] = {
    200: {"content": {"text/event-stream": {"schema": sse_schema(STREAMED, OpenAIError, done="[DONE]")}}}
}
FINISH = {"eos": "stop", "stop": "stop", "length": "length"}


def error_body(status: int, error_type: str, message: str) -> dict:
    return {"error": {"message": message, "type": error_type, "param": None, "code": status}}


def adapter_of(model: str, base_id: str) -> str | None:
    """The adapter ``model`` names (None: the plain base, by its id or '')."""
    return None if model in ("", base_id) else validate_name(model)


def choice_params(body: SamplingFields, max_tokens: int, logprobs: int | None) -> list[GenerationParams]:
    """One GenerationParams per choice (``n`` of them): greedy at temperature 0, else sampling."""
    temperature = 1.0 if body.temperature is None else body.temperature
    greedy = temperature == 0
    if body.n > 1 and greedy:
        raise InvalidParametersError(
            "n > 1 gives n copies of one greedy answer: sample (temperature > 0) or send n=1"
        )
    return [
        GenerationParams(
            max_new_tokens=max_tokens,
            min_new_tokens=min(body.min_tokens, max_tokens),  # generation ends at max_tokens
            do_sample=not greedy,
            temperature=1.0 if greedy else temperature,
            top_p=1.0 if body.top_p is None else body.top_p,
            top_k=body.top_k or 0,
            repetition_penalty=1.0 if body.repetition_penalty is None else body.repetition_penalty,
            seed=None if body.seed is None else body.seed + j,
            stop=body.stop_sequences(),
            logprobs=logprobs,
        )
        for j in range(body.n)
    ]


def usage(results: Sequence[RowResult], n: int) -> Usage:
    prompt = sum(r.output.input_tokens for r in results[::n])  # each prompt counts once, whatever n
    completion = sum(r.output.generated_tokens for r in results)
    return Usage(prompt_tokens=prompt, completion_tokens=completion, total_tokens=prompt + completion)


async def _submit(
    body, request, engine, settings, who, texts: list[str], max_tokens: int, logprobs: int | None
):
    """Check the request, queue one row per text and choice; returns (adapter, rows' texts, params)."""
    body.check_neutral()
    adapter = adapter_of(body.model, engine.model_id)
    request.state.adapter = adapter
    who.check(adapter)
    check_texts(texts, settings, "prompt")
    params = [within_caps(p, settings, body.min_tokens) for p in choice_params(body, max_tokens, logprobs)]
    row_texts = [t for t in texts for _ in params]
    row_params = [p for _ in texts for p in params]
    return adapter, row_texts, row_params


async def merged(streams: Sequence[RowStream]) -> AsyncIterator[tuple[int, StreamToken, bool]]:
    """(row, token, last) of several streams as they come. Leaving early cancels every row."""
    queue: asyncio.Queue = asyncio.Queue()

    async def pump(i: int, stream: RowStream) -> None:
        try:
            async for token, last in stream.tokens():
                await queue.put((i, token, last))
        except Exception as e:
            await queue.put((i, e, True))

    tasks = [asyncio.create_task(pump(i, s)) for i, s in enumerate(streams)]
    try:
        for _ in range(len(streams)):
            while True:
                i, token, last = await queue.get()
                if isinstance(token, Exception):
                    raise token
                yield i, token, last
                if last:
                    break
    finally:
        for task in tasks:
            task.cancel()
        for stream in streams:
            stream.cancel()


# ---------------------------------------------------------------------------------------- completions


def completion_logprobs(tokenizer, tokens: list[tuple[str, TokenLogprob]], offset: int) -> CompletionLogprobs:
    texts, offsets = [], []
    for text, _ in tokens:
        offsets.append(offset)
        texts.append(text)
        offset += len(text)
    return CompletionLogprobs(
        tokens=texts,
        token_logprobs=[lp.logprob for _, lp in tokens],
        top_logprobs=[{tokenizer.decode([i]): v for i, v in lp.top} for _, lp in tokens],
        text_offset=offsets,
    )


def token_logprobs(tokenizer, out: GenerationOutput) -> list[tuple[str, TokenLogprob]]:
    """Each generated token's text (they concatenate to the output) and its logprobs."""
    assert out.logprobs is not None
    return [(t.text, lp) for t, lp in zip(output_tokens(tokenizer, out), out.logprobs, strict=True)]


def completion_whole(meta: dict, results: list[RowResult], tokenizer, n: int) -> Completion:
    choices = [
        CompletionChoice(
            index=i,
            text=r.output.text,
            logprobs=None
            if r.output.logprobs is None
            else completion_logprobs(tokenizer, token_logprobs(tokenizer, r.output), 0),
            finish_reason=FINISH[r.output.finish_reason],
        )
        for i, r in enumerate(results)
    ]
    return Completion(**meta, choices=choices, usage=usage(results, n))


def completion_piece(
    i: int, token: StreamToken, out: GenerationOutput | None, tokenizer, offset: int
) -> dict:
    logprobs = None
    if token.logprob is not None:
        logprobs = completion_logprobs(tokenizer, [(token.text, token.logprob)], offset).model_dump()
    return {
        "index": i,
        "text": token.text,
        "logprobs": logprobs,
        "finish_reason": FINISH[out.finish_reason] if out else None,
    }


@router.post("/completions", response_model=Completion, responses=ERRORS | SSE)
async def completions(
    request: Request,
    body: CompletionRequest,
    engine: EngineDep,
    settings: SettingsDep,
    metrics: MetricsDep,
    who: CallerDep,
):
    """OpenAI's text completions: one choice per prompt (times ``n``), ``index`` in order."""
    prompts = [body.prompt] if isinstance(body.prompt, str) else list(body.prompt)
    max_tokens = body.max_tokens if body.max_tokens is not None else settings.default_max_new_tokens
    return await _answer(
        request, body, engine, settings, metrics, who, prompts, max_tokens, body.logprobs, COMPLETION
    )


# ---------------------------------------------------------------------------------------- chat


def chat_input(body: ChatCompletionRequest) -> str:
    """The one user message's text: an adapter takes one input, not a conversation."""
    roles = [m.role for m in body.messages]
    if roles.count("user") != 1 or any(r not in ("user",) for r in roles):
        extra = sorted({r for r in roles if r != "user"})
        why = f"a {', '.join(extra)} message" if extra else f"{roles.count('user')} user messages"
        raise UnsupportedConversationError(
            f"an adapter takes one input, so a chat request holds exactly one user message; this one has {why}: "
            "send the input as the only message (an adapter cannot take a system prompt or earlier turns)"
        )
    content = body.messages[0].content
    if isinstance(content, str):
        return content
    parts = content or []
    if any(p.type != "text" for p in parts):
        raise UnsupportedConversationError("only text content parts are supported")
    return "".join(p.text or "" for p in parts)


def chat_logprobs(tokenizer, tokens: list[tuple[str, TokenLogprob]]) -> ChatLogprobs:
    def top(i: int, lp: float) -> TopLogprob:
        text = tokenizer.decode([i])
        return TopLogprob(token=text, logprob=lp, bytes=list(text.encode()))

    return ChatLogprobs(
        content=[
            ChatTokenLogprob(
                token=text,
                logprob=lp.logprob,
                bytes=list(text.encode()),
                top_logprobs=[top(i, v) for i, v in lp.top],
            )
            for text, lp in tokens
        ]
    )


def chat_whole(meta: dict, results: list[RowResult], tokenizer, n: int) -> ChatCompletion:
    choices = [
        ChatChoice(
            index=i,
            message=AssistantMessage(content=r.output.text),
            logprobs=None
            if r.output.logprobs is None
            else chat_logprobs(tokenizer, token_logprobs(tokenizer, r.output)),
            finish_reason=FINISH[r.output.finish_reason],
        )
        for i, r in enumerate(results)
    ]
    return ChatCompletion(**meta, choices=choices, usage=usage(results, n))


def chat_piece(i: int, token: StreamToken, out: GenerationOutput | None, tokenizer, offset: int) -> dict:
    logprobs = None
    if token.logprob is not None:
        logprobs = chat_logprobs(tokenizer, [(token.text, token.logprob)]).model_dump()
    return {
        "index": i,
        "delta": {"content": token.text} if token.text else {},
        "logprobs": logprobs,
        "finish_reason": FINISH[out.finish_reason] if out else None,
    }


@router.post("/chat/completions", response_model=ChatCompletion, responses=ERRORS | SSE)
async def chat_completions(
    request: Request,
    body: ChatCompletionRequest,
    engine: EngineDep,
    settings: SettingsDep,
    metrics: MetricsDep,
    who: CallerDep,
):
    """A thin chat route for text-to-text adapters: the one user message is the input."""
    text = chat_input(body)
    max_tokens = body.max_completion_tokens or body.max_tokens or settings.default_max_new_tokens
    logprobs = (body.top_logprobs or 0) if body.logprobs else None
    return await _answer(request, body, engine, settings, metrics, who, [text], max_tokens, logprobs, CHAT)


# ---------------------------------------------------------------------------------------- both


@dataclass(frozen=True)
class Shape:
    """How one OpenAI route answers: its id prefix, its whole answer, its stream chunks."""

    prefix: str
    chunk_object: str
    whole: Callable[[dict, list[RowResult], Any, int], BaseModel]  # (meta, results, tokenizer, n)
    piece: Callable[[int, StreamToken, GenerationOutput | None, Any, int], dict]  # a chunk's choice
    opening: Callable[[int], dict] | None = None  # the choice of a first chunk per row (chat: the role)


COMPLETION = Shape("cmpl", "text_completion", completion_whole, completion_piece)
CHAT = Shape(
    "chatcmpl",
    "chat.completion.chunk",
    chat_whole,
    chat_piece,
    lambda i: {"index": i, "delta": {"role": "assistant", "content": ""}, "finish_reason": None},
)


async def _answer(request, body, engine, settings, metrics, who, texts, max_tokens, logprobs, shape: Shape):
    adapter, rows, params = await _submit(body, request, engine, settings, who, texts, max_tokens, logprobs)
    meta = {"id": f"{shape.prefix}-{uuid.uuid4().hex}", "created": int(time.time()), "model": body.model}
    if body.stream:
        streams = await engine.submit(adapter, rows, params, stream=True)
        include_usage = bool(body.stream_options and body.stream_options.include_usage)
        chunks = _chunks(streams, meta, body.n, engine.tokenizer, include_usage, metrics, shape)
        return sse_response(request, chunks, error_body, done="[DONE]")
    results = await while_connected(request, engine.generate(adapter, rows, params))
    return shape.whole(meta, results, engine.tokenizer, body.n)


async def _chunks(streams, meta, n, tokenizer, include_usage, metrics, shape: Shape) -> AsyncIterator[dict]:
    head = {**meta, "object": shape.chunk_object}
    if shape.opening is not None:  # OpenAI sends a chat message's role first
        for i in range(len(streams)):
            yield {**head, "choices": [shape.opening(i)]}
    offsets = [0] * len(streams)
    first = True
    async for i, token, last in merged(streams):
        if first:
            metrics.time_to_first_token.observe(time.monotonic() - streams[i].row.arrival)
            first = False
        out = (await streams[i].result()).output if last else None
        yield {**head, "choices": [shape.piece(i, token, out, tokenizer, offsets[i])]}
        offsets[i] += len(token.text)
    if include_usage:
        results = [await s.result() for s in streams]
        yield {**head, "choices": [], "usage": usage(results, n).model_dump()}


# ---------------------------------------------------------------------------------------- models


async def _cards(engine, who: Caller) -> list[dict]:
    base, adapters = await asyncio.to_thread(engine.model_cards)
    return [card for card in (base, *adapters) if who.may_use(None if card is base else card["id"])]


@router.get("/models", response_model=ModelList)
async def list_models(engine: EngineDep, who: CallerDep) -> ModelList:
    """The base model and every adapter on disk (``parent``: the base's id), those the API key may use."""
    return ModelList(data=[ModelCard(**card) for card in await _cards(engine, who)])


@router.get("/models/{model_id}", response_model=ModelCard, responses=ERRORS)
async def get_model(model_id: str, engine: EngineDep, who: CallerDep) -> ModelCard:
    for card in await _cards(engine, who):
        if card["id"] == model_id:
            return ModelCard(**card)
    raise AdapterNotFoundError(f"model {model_id!r} not found: GET /v1/models lists the served ones")
