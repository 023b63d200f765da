"""The app factory: ``create_app(settings)`` builds one independent server (no global state)."""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from collections.abc import Callable
from contextlib import asynccontextmanager
from pathlib import Path

from fastapi import FastAPI, Request

from adapters import list_adapter_names

from .api import errors
from .api.routes import router
from .demo import resolve_model
from .engine.engine import Engine
from .errors import SettingsError
from .metrics import Metrics
from .settings import ServerSettings

log = logging.getLogger(__name__)


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
    model_path, adapter_dir = resolve_paths(settings)
    metrics = Metrics(settings.metrics_max_adapter_labels)
    engine = Engine(settings, metrics, model_path, adapter_dir)

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        async def load() -> None:
            try:
                await asyncio.to_thread(engine.start)
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
    )
    app.state.settings = settings
    app.state.engine = engine
    app.state.metrics = metrics
    app.state.admin_key = settings.resolved_admin_key()
    errors.install(app)
    app.include_router(router)

    @app.middleware("http")
    async def observe(request: Request, call_next):
        """Echo (or assign) X-Request-Id; count every /generate request by adapter and status,
        validation failures included."""
        request_id = request.headers.get("x-request-id") or uuid.uuid4().hex
        started = time.perf_counter()
        status = 500
        try:
            response = await call_next(request)
            status = response.status_code
            response.headers["x-request-id"] = request_id
            return response
        finally:
            if request.url.path == "/generate":
                adapter = request.query_params.get("adapter")
                metrics.observe_request(adapter, status, time.perf_counter() - started)

    return app
