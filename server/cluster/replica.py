"""The replica deployment: one inputtune engine (one device) serving the single-process app.

Each replica builds the app of ``server.app.create_app`` (its engine: adapter cache tiers, queue,
device thread, cross-adapter continuous batching) and runs every forwarded request through it
(``bridge.run_asgi``): the routes, errors and streaming are the single process's own.

Adapters are Ray Serve multiplexed models: the ingress tags a request with its adapter's name, Ray
Serve prefers a replica whose multiplexed ids hold that name, and ``_warm`` (the multiplexed load
hook) reads and validates the adapter into this replica's host tier before the request is queued. The
multiplexed LRU holds ``device_slots`` ids, so what a replica advertises is about what its device tier
holds; the engine's own LRU decides what stays on the device. Deliberately no ``@serve.batch``: it
would split batches by multiplexed id and undo mixed-adapter batching (the engine batches itself).

Ray Serve's graceful shutdown (downscaling, redeploys) stops sending requests to the replica, waits
for its in-flight ones, then calls ``__del__``, which runs the engine's drain (``Engine.stop``).
"""

from __future__ import annotations

import asyncio
import logging
import os
from collections.abc import AsyncIterator

import ray
from ray import serve

from ..app import create_app
from ..settings import ServerSettings
from .bridge import ForwardedRequest, run_asgi

log = logging.getLogger(__name__)

REPLICA_HEADER = "x-inputtune-replica"  # which replica answered (its Ray actor name)
ON_DEVICE_HEADER = "x-inputtune-adapter-on-device"  # 1: the adapter was on the device before the request


class InputtuneReplica:
    """One engine on one device; ``settings`` are ServerSettings fields (INPUTTUNE_* variables of the
    replica's environment fill in the rest)."""

    async def __init__(self, settings: dict) -> None:  # type: ignore[misc]  # Ray Serve awaits it
        self.settings = ServerSettings(**settings)
        self.app = create_app(self.settings, url="ray-serve")
        self.engine = self.app.state.engine
        self._lifespan = self.app.router.lifespan_context(self.app)
        await self._lifespan.__aenter__()  # starts the engine (model loading on its device thread)
        await asyncio.to_thread(self.engine.wait_started)  # a failed load fails the replica's start
        self.name = ray.get_runtime_context().get_actor_name() or f"pid-{os.getpid()}"

        async def load(name: str) -> str:  # a plain function: the multiplexer keeps its state on it
            return await self._load(name)

        self._warm = serve.multiplexed(max_num_models_per_replica=self.settings.device_slots)(load)
        log.info("replica %s ready: %s", self.name, self.engine.status())

    async def _load(self, name: str) -> str:
        """The multiplexed load hook: read and validate adapter ``name`` into the host tier (a disk miss
        costs a file read and a check; the device tier is filled by the request's own batch)."""
        await asyncio.to_thread(self.engine.cache.resolve, name)
        return name

    def _on_device(self, name: str) -> bool:
        return any(n == name for n, _ in self.engine.cache.device_contents().values())

    def _exists(self, name: str) -> bool:
        try:
            return self.engine.cache.path(name).is_file()
        except Exception:  # an invalid name: the route says why (422)
            return False

    async def forward(self, request: ForwardedRequest) -> AsyncIterator[dict | bytes]:
        """Answer one HTTP request with the single-process app: {"status", "headers"}, then body chunks."""
        headers = [(REPLICA_HEADER, self.name)]
        name = request["adapter"]
        if name:
            headers.append((ON_DEVICE_HEADER, "1" if self._on_device(name) else "0"))
            # routed by adapter: warm it, and this replica advertises it; an unknown adapter is not a
            # model (the route answers 404)
            if serve.get_multiplexed_model_id() == name and self._exists(name):
                try:
                    await self._warm(name)
                except Exception:  # unreadable or incompatible: the route answers with its error
                    log.debug("warming adapter %r failed", name, exc_info=True)
        async for item in run_asgi(self.app, request, headers):
            yield item

    async def check_health(self) -> None:
        """Ray Serve's health check: a replica whose device thread stopped is replaced."""
        status = self.engine.status()
        if not status.ready and not self.engine.stopping:
            raise RuntimeError(f"inputtune engine not ready: {status.reason}")

    async def __del__(self) -> None:
        """Graceful shutdown: Ray Serve has waited for in-flight requests; drain the engine and stop."""
        lifespan = getattr(self, "_lifespan", None)  # None: the replica failed before it started
        if lifespan is not None:
            await lifespan.__aexit__(None, None, None)
