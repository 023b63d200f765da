"""Server-sent events: one helper for every streamed route (TGI's /generate_stream, OpenAI's
``stream: true``), built on sse-starlette.

Errors that happen before the stream starts are plain HTTP errors (the route raises them before it
returns this response). An error during the stream becomes one last event in the route's error
shape. A client that goes away cancels the generator: its rows leave the batch at the next step,
and the request is counted with status 499.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import AsyncIterator, Callable

from fastapi import Request
from sse_starlette import EventSourceResponse

from .errors import classify

log = logging.getLogger(__name__)

CLIENT_GONE = 499  # nginx's "client closed request": the status a disconnected stream is counted with


def sse_response(
    request: Request,
    events: AsyncIterator[dict],
    error_event: Callable[[int, str, str], dict],
    done: str | None = None,
) -> EventSourceResponse:
    """Stream ``events`` as ``data: <json>`` lines, then ``data: <done>`` if given.

    error_event(status, error_type, message) is the body of the event that reports a failure."""
    request.state.status = 200

    async def body() -> AsyncIterator[dict]:
        try:
            async for event in events:
                yield {"data": json.dumps(event, ensure_ascii=False)}
            if done is not None:
                yield {"data": done}
        except asyncio.CancelledError:
            request.state.status = CLIENT_GONE
            raise
        except Exception as e:
            status, error_type, message, _ = classify(e)
            if status == 500:
                log.error("stream failed", exc_info=e)
            request.state.status = status
            yield {"data": json.dumps(error_event(status, error_type, message), ensure_ascii=False)}

    return EventSourceResponse(body(), sep="\n", ping=15)
