"""One forwarded HTTP request run through an ASGI app (the single-process FastAPI app) in a replica.

The ingress sends the request as a plain dict (``ForwardedRequest``); the replica runs it through
``server.app.create_app``'s app exactly as uvicorn would, and yields what the app sends: first
``{"status", "headers"}``, then the body's chunks (bytes) as the app writes them, so a streamed answer
streams. Every route, error and header of the single process is therefore the cluster's too.

Leaving the generator early (the client went away, the ingress cancelled) tells the app the client
disconnected, as uvicorn would, and cancels it: the engine drops the request's rows.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Sequence
from typing import Any, TypedDict

_DONE = object()


class ForwardedRequest(TypedDict):
    """An HTTP request as the ingress received it (headers as latin-1 strings, as in ASGI)."""

    method: str
    path: str
    query_string: bytes
    headers: list[tuple[str, str]]
    body: bytes
    client: tuple[str, int] | None
    adapter: str | None  # the adapter the ingress read from it (routing.adapter_of_request)


def scope_of(request: ForwardedRequest) -> dict[str, Any]:
    """The ASGI HTTP scope of a forwarded request."""
    return {
        "type": "http",
        "asgi": {"version": "3.0", "spec_version": "2.3"},
        "http_version": "1.1",
        "method": request["method"],
        "scheme": "http",
        "path": request["path"],
        "raw_path": request["path"].encode("latin-1"),
        "root_path": "",
        "query_string": request["query_string"],
        "headers": [(k.lower().encode("latin-1"), v.encode("latin-1")) for k, v in request["headers"]],
        "client": request["client"],
        "server": ("127.0.0.1", 80),
        "state": {},
    }


async def run_asgi(
    app, request: ForwardedRequest, extra_headers: Sequence[tuple[str, str]] = ()
) -> AsyncIterator[dict | bytes]:
    """Run ``request`` through the ASGI ``app``: yield {"status", "headers"} (with ``extra_headers``
    added), then each non-empty body chunk. An exception the app raises propagates."""
    out: asyncio.Queue = asyncio.Queue()
    disconnected = asyncio.Event()
    body_sent = False

    async def receive() -> dict:
        nonlocal body_sent
        if not body_sent:
            body_sent = True
            return {"type": "http.request", "body": request["body"], "more_body": False}
        await disconnected.wait()
        return {"type": "http.disconnect"}

    async def send(message: dict) -> None:
        await out.put(message)

    async def call() -> None:
        try:
            await app(scope_of(request), receive, send)
        except BaseException as e:  # handed to the reader, which re-raises it
            await out.put(e)
        else:
            await out.put(_DONE)

    task = asyncio.create_task(call())
    try:
        while True:
            message = await out.get()
            if message is _DONE:
                return
            if isinstance(message, BaseException):
                raise message
            if message["type"] == "http.response.start":
                headers = [(k.decode("latin-1"), v.decode("latin-1")) for k, v in message.get("headers", [])]
                yield {"status": message["status"], "headers": headers + list(extra_headers)}
            elif message["type"] == "http.response.body":
                chunk = message.get("body", b"")
                if chunk:
                    yield bytes(chunk)
                if not message.get("more_body", False):
                    return
    finally:
        disconnected.set()
        if not task.done():
            with contextlib.suppress(asyncio.TimeoutError):  # an app that ended its answer returns at once
                await asyncio.wait_for(asyncio.shield(task), 1.0)
        if not task.done():
            task.cancel()
            with contextlib.suppress(BaseException):
                await task
