"""The engine: owns the adapted model, the adapter cache, the queue and the device thread.

The front (event loop) validates, resolves the adapter (disk loads go to a worker thread),
tokenizes and enqueues rows, then awaits their futures. The device thread takes a batch
when it is free, makes the batch's adapters device-resident, calls the adapted model once
for the whole batch, and resolves each row's future. A failure in a batch fails only that
batch's rows.

The routes call only the public methods below; while the model loads (or after it failed,
or while draining) they raise NotReadyError.
"""

from __future__ import annotations

import asyncio
import copy
import logging
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import torch

from adapters import AdaptedModel, GenerationParams, InputTooLongError, encode_sources
from adapters.decoding import continuous_supported
from adapters.decoding.t5_step import CONTINUOUS_TYPES, StepDecoder

from ..errors import NotReadyError, RequestTimeoutError
from ..metrics import Metrics
from ..settings import ServerSettings
from .cache import AdapterCache
from .queue import BatchPolicy, PendingQueue, Row
from .types import Pending, RowResult
from .worker import DeviceWorker

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class EngineStatus:
    """What /ready reports."""

    ready: bool
    model: str
    device: str | None = None
    dtype: str | None = None
    reason: str | None = None  # why it is not ready


class Engine:
    """Owns the adapted model, the adapter cache, the queue and the device thread."""

    def __init__(self, settings: ServerSettings, metrics: Metrics, model_path: str, adapter_dir: Path) -> None:
        self.settings = settings
        self.metrics = metrics
        self.model_path = model_path
        self.adapter_dir = adapter_dir
        self.model: AdaptedModel | None = None
        self.cache: AdapterCache | None = None
        self.queue: PendingQueue[Pending] = PendingQueue(settings.max_queue)
        self.ready = threading.Event()
        self.stopping = False
        self.load_error: BaseException | None = None
        self.worker: DeviceWorker | None = None
        self._thread: threading.Thread | None = None
        self._tokenizer = None

    # ------------------------------------------------------------------ life cycle

    def start(self) -> None:
        """Load the model, preload/pin adapters, warm up, start the device thread (blocking)."""
        try:
            s = self.settings
            torch.set_grad_enabled(False)
            model = AdaptedModel.load(self.model_path, device=s.device, dtype=s.dtype, num_slots=s.device_slots)
            self.cache = AdapterCache(
                self.adapter_dir,
                model.base.fingerprint,
                model.base.d_model,
                s.device_slots,
                s.host_slots,
                load_slot=model.bank.load,
                pins=s.pin,
                on_event=self.metrics.cache_event,
            )
            self.model = model
            # the front tokenizes while the device thread decodes: fast tokenizers are not re-entrant
            self._tokenizer = copy.deepcopy(model.tokenizer)
            names = list(dict.fromkeys([*s.pin, *s.preload]))
            entries = [self.cache.resolve(name) for name in names]
            self.cache.acquire(entries[: s.device_slots])
            continuous = s.scheduling == "continuous" and continuous_supported(model.base.model)
            if continuous:
                StepDecoder(model.base.model).self_check()  # refuse to serve a decoder that disagrees
            elif s.scheduling == "continuous":
                log.info(
                    "scheduling: static (continuous batching supports %s bases)", ", ".join(CONTINUOUS_TYPES)
                )
            if s.warmup:
                model.generate(["warm-up"], [0], GenerationParams(max_new_tokens=2))
            policy = BatchPolicy(
                s.max_batch_size,
                s.max_batch_tokens,
                s.max_wait_ms / 1000,
                self.cache.max_unpinned_in_batch(),
                per_adapter=s.batching == "per-adapter",
            )
            self.worker = DeviceWorker(model, self.cache, self.queue, self.metrics, policy, continuous)
            self._thread = threading.Thread(target=self.worker.run, name="inputtune-device", daemon=True)
            self._thread.start()
            self.ready.set()
            log.debug(
                "ready: model %s on %s (%s), %d adapters in %s, %d preloaded",
                model.base.name,
                model.base.device,
                str(model.base.dtype).replace("torch.", ""),
                len(self.cache.names_on_disk()),
                self.adapter_dir,
                len(entries),
            )
        except BaseException as e:
            self.load_error = e
            log.exception("start-up failed")
            raise

    def stop(self, timeout_s: float) -> None:
        """Finish queued rows within ``timeout_s``, then fail whatever is left with 503."""
        self.stopping = True
        self.ready.clear()
        self.queue.close()
        if self._thread is not None:
            self._thread.join(timeout_s)
            if self._thread.is_alive():
                log.warning("drain timeout (%.1f s) reached with work queued", timeout_s)
        for row in self.queue.drain():
            row.payload.fail(NotReadyError("the server shut down before this request ran"))

    def status(self) -> EngineStatus:
        if self.ready.is_set() and self.model is not None:
            base = self.model.base
            return EngineStatus(True, self.model_path, str(base.device), str(base.dtype).replace("torch.", ""))
        if self.load_error is not None:
            reason = f"start-up failed: {self.load_error}"
        else:
            reason = "shutting down" if self.stopping else "the model is loading"
        return EngineStatus(False, self.model_path, reason=reason)

    def queue_depth(self) -> int:
        return len(self.queue)

    def _loaded(self) -> tuple[AdaptedModel, AdapterCache]:
        """The model and cache once loading is done and the server is not draining; else NotReadyError."""
        if not self.ready.is_set() or self.model is None or self.cache is None:
            raise NotReadyError("the server is shutting down" if self.stopping else "the model is still loading")
        return self.model, self.cache

    # ------------------------------------------------------------------ adapters (blocking: call in a thread)

    def adapter_infos(self) -> list[dict]:
        """Every adapter file in the folder with its facts; a broken file is left out (GET
        /adapters/NAME says why), so one bad file never hides the others."""
        cache = self._loaded()[1]
        infos = []
        for name in cache.names_on_disk():
            try:
                infos.append(cache.describe(name))
            except Exception:  # noqa: S112
                continue
        return infos

    def adapter_info(self, name: str) -> dict:
        return self._loaded()[1].describe(name)

    def upload_adapter(self, name: str, data: bytes) -> dict:
        cache = self._loaded()[1]
        cache.put(name, data)
        return cache.describe(name)

    def delete_adapter(self, name: str) -> None:
        self._loaded()[1].delete(name)

    # ------------------------------------------------------------------ requests (event loop)

    async def generate(
        self, adapter: str | None, texts: Sequence[str], params: GenerationParams, truncate: bool = False
    ) -> list[RowResult]:
        model, cache = self._loaded()
        entry = None
        if adapter is not None:
            entry = cache.cached(adapter) or await asyncio.to_thread(cache.resolve, adapter)
        ids = self.encode(model, texts, truncate)
        loop = asyncio.get_running_loop()
        prompt = entry.prompt_length if entry else 0
        rows = [
            Row(
                tokens=len(r) + prompt,
                adapter=entry,
                pinned=bool(entry and entry.pinned),
                payload=Pending(r, entry, params, loop.create_future(), loop),
            )
            for r in ids
        ]
        self.queue.put(rows)
        self.metrics.queue_depth.set(len(self.queue))
        futures = [row.payload.future for row in rows]
        try:
            return list(await asyncio.wait_for(asyncio.gather(*futures), self.settings.request_timeout_s))
        except TimeoutError as e:
            for row in rows:
                row.cancelled = True
            raise RequestTimeoutError(
                f"the request waited more than {self.settings.request_timeout_s:.0f} s: "
                "the server is overloaded"
            ) from e

    def encode(self, model: AdaptedModel, texts: Sequence[str], truncate: bool) -> list[list[int]]:
        ids = encode_sources(self._tokenizer, texts, model.is_encoder_decoder)
        limit = self.settings.max_input_tokens
        for i, row in enumerate(ids):
            if len(row) > limit:
                if not truncate:
                    raise InputTooLongError(
                        f"input {i} has {len(row)} tokens but the limit is {limit}: shorten it or send "
                        '"truncate": true in parameters'
                    )
                ids[i] = row[: limit - 1] + row[-1:]  # keep the closing EOS/separator
        return ids
