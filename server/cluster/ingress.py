"""The ingress deployment: every HTTP request, routed to a replica by its adapter.

Ray Serve's HTTP proxy hands each request to ``InputtuneIngress.__call__``. It reads the adapter the
request names (``routing.adapter_of_request``), makes it the request's multiplexed model id, and
forwards the request whole to a replica (``InputtuneReplica.forward``): Ray Serve sends it to a replica
that already holds that adapter when one has room, else to the replica with the fewest adapters, and
spreads a hot adapter when its replicas are full (``max_ongoing_requests``). With ``affinity`` off,
requests carry no id and go to the less busy of two random replicas (Ray Serve's default).

A replica that dies before a request's answer began (its actor killed, its node lost) is not the
client's problem: the request is sent again, to another replica, up to ``retries`` times; then 503 with
Retry-After. A non-streamed answer is collected whole before it is sent, so it is complete or a 503,
never cut. A stream that loses its replica midway ends with one error event in its route's shape,
like every error during a stream.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import AsyncIterator
from typing import cast

from fastapi.responses import JSONResponse
from ray.exceptions import RayActorError, RayError, RayTaskError
from ray.serve.exceptions import BackPressureError
from ray.serve.handle import DeploymentHandle, DeploymentResponseGenerator
from starlette.requests import Request
from starlette.responses import Response, StreamingResponse

from ..api.errors import body as error_body
from .bridge import ForwardedRequest
from .routing import adapter_of_request

log = logging.getLogger(__name__)

# set by the HTTP proxy itself (Ray Serve echoes X-Request-Id as the single process does)
HOP_BY_HOP = frozenset({"content-length", "transfer-encoding", "connection", "keep-alive", "x-request-id"})
ATTEMPT_HEADER = "x-inputtune-attempt"  # present when a replica failed and the request was sent again
RETRYABLE_METHODS = frozenset({"GET", "HEAD", "POST"})  # generation is safe to run again; PUT/DELETE not


class ReplicaUnavailable(Exception):
    """No replica could take the request (after the retries): 503."""


class InputtuneIngress:
    """Routes each HTTP request to an ``InputtuneReplica`` by the adapter it names."""

    def __init__(
        self,
        replicas: DeploymentHandle,
        affinity: bool = True,
        retries: int = 2,
        first_byte_timeout_s: float = 150.0,
    ) -> None:
        self.replicas = replicas
        self.affinity = affinity
        self.retries = retries
        self.first_byte_timeout_s = first_byte_timeout_s

    def set_affinity(self, on: bool) -> bool:
        """Turn routing by adapter on or off at run time (to measure what it brings); the old value."""
        old, self.affinity = self.affinity, on
        return old

    async def __call__(self, request: Request) -> Response:
        query_string, body = request.scope.get("query_string", b""), await request.body()
        adapter = adapter_of_request(request.method, request.url.path, query_string, body)
        forwarded = ForwardedRequest(
            method=request.method,
            path=request.url.path,
            query_string=query_string,
            headers=[(k.decode("latin-1"), v.decode("latin-1")) for k, v in request.scope["headers"]],
            body=body,
            client=tuple(request.client) if request.client else None,  # type: ignore[typeddict-item]
            adapter=adapter,
        )
        handle = self.replicas.options(stream=True)
        if adapter and self.affinity:
            handle = handle.options(multiplexed_model_id=adapter)
        attempts = 1 + (self.retries if request.method in RETRYABLE_METHODS else 0)
        last: BaseException | None = None
        for attempt in range(attempts):
            if attempt:
                await asyncio.sleep(0.2 * attempt)  # Ray Serve learns of the dead replica meanwhile
            stream = cast(DeploymentResponseGenerator, handle.forward.remote(forwarded))
            try:
                start = await asyncio.wait_for(stream.__anext__(), self.first_byte_timeout_s)
                if attempt:  # say so: the request ran again after its first replica failed
                    start["headers"].append((ATTEMPT_HEADER, str(attempt + 1)))
                if _is_event_stream(start["headers"]):
                    return _streaming(start, stream, request)
                content = b"".join([chunk async for chunk in stream])
            except BackPressureError as e:
                stream.cancel()
                return _unavailable(request, f"every replica is busy: retry later ({e})", "overloaded", 1)
            except (RayError, StopAsyncIteration) as e:
                stream.cancel()
                if isinstance(e, RayTaskError) and not isinstance(e, RayActorError):
                    # the replica's own code raised: a bug, not a lost replica (the app answers its errors)
                    log.error(
                        "request %s %s failed in its replica", request.method, request.url.path, exc_info=e
                    )
                    message = "internal server error (this is a bug; the trace is in the server log)"
                    return JSONResponse(error_body(request, 500, "internal_error", message), status_code=500)
                log.warning("request %s %s: replica failed (attempt %d): %s", request.method, request.url.path,
                            attempt + 1, e)  # fmt: skip
                last = e
                continue
            except TimeoutError:
                stream.cancel()
                return _unavailable(request, "no replica answered in time: retry later", "timeout", 5)
            except BaseException:
                stream.cancel()  # the client went away: the replica drops the request's rows
                raise
            response = Response(content, status_code=start["status"])
            response.raw_headers = _headers(start["headers"]) + [
                (b"content-length", str(len(content)).encode())
            ]
            return response
        return _unavailable(
            request,
            f"the replica serving this request failed ({type(last).__name__}): retry",
            "unavailable",
            1,
        )


def _is_event_stream(headers: list[tuple[str, str]]) -> bool:
    return any(k.lower() == "content-type" and v.startswith("text/event-stream") for k, v in headers)


def _headers(headers: list[tuple[str, str]]) -> list[tuple[bytes, bytes]]:
    return [(k.encode("latin-1"), v.encode("latin-1")) for k, v in headers if k.lower() not in HOP_BY_HOP]


def _streaming(start: dict, stream: DeploymentResponseGenerator, request: Request) -> StreamingResponse:
    async def chunks() -> AsyncIterator[bytes]:
        try:
            async for chunk in stream:
                yield chunk
        except RayError as e:
            log.warning("stream %s: replica failed mid-stream: %s", request.url.path, e)
            event = error_body(request, 503, "unavailable", "the replica serving this stream failed: retry")
            yield f"data:{json.dumps(event)}\n\n".encode()
        finally:
            stream.cancel()  # no-op once the stream ended; else the replica drops the rows

    response = StreamingResponse(chunks(), status_code=start["status"])
    response.raw_headers = _headers(start["headers"])
    return response


def _unavailable(request: Request, message: str, error_type: str, retry_after_s: int) -> JSONResponse:
    return JSONResponse(
        error_body(request, 503, error_type, message),
        status_code=503,
        headers={"Retry-After": str(retry_after_s)},
    )
