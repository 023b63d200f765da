"""The app factory: ``create_app(settings)`` builds one independent server (no global state)."""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from contextlib import asynccontextmanager
from pathlib import Path
from urllib.parse import parse_qs

from fastapi import Depends, FastAPI, Request

from adapters import list_adapter_names

from .api import errors, generate, openai, routes
from .api.deps import install_access_log_filter, no_credentials_in_url
from .api.openapi import openapi_with_caps
from .demo import resolve_model
from .engine.engine import Engine, single_intra_op_thread
from .errors import SettingsError
from .metrics import Metrics
from .settings import ServerSettings

log = logging.getLogger(__name__)

GENERATION_PATHS = frozenset(
    {"/", "/generate", "/generate_stream", "/v1/completions", "/v1/chat/completions"}
)


def resolve_paths(settings: ServerSettings) -> tuple[str, Path]:
    """(model, adapter folder) to serve: a server needs an adapter folder."""
    model, adapter_dir = resolve_model(settings.model, settings.adapter_dir, settings.cache)
    if adapter_dir is None:
        raise SettingsError(
            "with --model (INPUTTUNE_MODEL) also set --adapter-dir (INPUTTUNE_ADAPTER_DIR): "
            "the folder that holds <name>.safetensors adapters for that base"
        )
    return model, adapter_dir


def create_app(
    settings: ServerSettings | None = None,
    on_fatal: Callable[[BaseException], None] | None = None,
    url: str | None = None,
) -> FastAPI:
    """Build the FastAPI app. The model loads in the background after start-up: /health answers at
    once, /ready turns 200 when loading and warm-up are done. ``on_fatal`` is called if loading fails."""
    settings = settings or ServerSettings()
    install_access_log_filter()
    model_path, adapter_dir = resolve_paths(settings)
    metrics = Metrics(settings.metrics_max_adapter_labels)
    engine = Engine(settings, metrics, model_path, adapter_dir)

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        asyncio.get_running_loop().set_default_executor(
            ThreadPoolExecutor(thread_name_prefix="inputtune-io", initializer=single_intra_op_thread)
        )
        engine.start()

        async def load() -> None:
            try:
                await asyncio.to_thread(engine.wait_started)
            except BaseException as e:
                if on_fatal is not None:
                    on_fatal(e)
                return
            status = engine.status()
            log.info(
                "inputtune serving %s on %s (%s), %d adapters in %s at %s",
                model_path,
                status.device,
                status.dtype,
                len(list_adapter_names(adapter_dir)),
                adapter_dir,
                url or "(in-process)",
            )

        task = asyncio.create_task(load())
        try:
            yield
        finally:
            if not task.done():
                await task
            await asyncio.to_thread(engine.stop, settings.drain_timeout_s)

    app = FastAPI(
        title="inputtune",
        version="0.1.0",
        lifespan=lifespan,
        description="Many Input-Tuning adapters on one frozen model, batched across tasks.",
        dependencies=[Depends(no_credentials_in_url)],
    )
    app.state.settings = settings
    app.state.engine = engine
    app.state.metrics = metrics
    app.state.admin_key = settings.resolved_admin_key()
    app.state.api_keys = settings.resolved_api_keys()
    errors.install(app)
    app.include_router(routes.router)
    app.include_router(generate.router)
    app.include_router(openai.router)
    app.add_middleware(RequestObserver, metrics=metrics)
    app.openapi = openapi_with_caps(app, settings, lambda: engine.model_id)  # type: ignore[method-assign]
    return app


class RequestObserver:
    """Echo (or assign) ``X-Request-Id`` on every response; count every generation request by adapter
    and status with its latency, validation failures included. ASGI middleware (not Starlette's
    BaseHTTPMiddleware), so a streamed response is timed to its end and a disconnected stream is
    counted with the status its route leaves in ``request.state.status`` (499)."""

    def __init__(self, app, metrics: Metrics) -> None:
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = dict(scope["headers"])
        request_id = headers.get(b"x-request-id", b"").decode("latin-1") or uuid.uuid4().hex
        state = scope.setdefault("state", {})
        started = time.perf_counter()
        status = 500

        async def send_with_id(message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                message["headers"] = [
                    *message.get("headers", []),
                    (b"x-request-id", request_id.encode("latin-1")),
                ]
            await send(message)

        started_response = False

        async def send_tracked(message) -> None:
            nonlocal started_response
            started_response = started_response or message["type"] == "http.response.start"
            await send_with_id(message)

        try:
            await self.app(scope, receive, send_tracked)
        except Exception as e:  # a bug: answer it here, so the connection stays clean for the next request
            if started_response:
                raise  # a response under way cannot be replaced: the server closes the connection
            response = errors.error_response(Request(scope), e)
            await response(scope, receive, send_with_id)
        finally:
            if scope["path"] in GENERATION_PATHS and scope["method"] == "POST":
                adapter = state.get("adapter", _query_adapter(scope))
                self.metrics.observe_request(
                    adapter, state.get("status", status), time.perf_counter() - started
                )


def _query_adapter(scope) -> str | None:
    values = parse_qs(scope.get("query_string", b"").decode("latin-1")).get("adapter")
    return values[0] if values else None
