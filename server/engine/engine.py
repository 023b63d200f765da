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
import math
import threading
import time
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import torch

from adapters import AdaptedModel, AdapterError, GenerationParams, InputTooLongError, encode_sources
from adapters.decoding import continuous_supported
from adapters.decoding.sampling import RowDecoding, StreamToken
from adapters.decoding.t5_step import CONTINUOUS_TYPES, StepDecoder

from ..errors import NotReadyError, OverloadedError, QueueFullError, RequestTimeoutError
from ..metrics import Metrics
from ..settings import ServerSettings
from .cache import AdapterCache, AdapterEntry
from .queue import BatchPolicy, PendingQueue, Row, WaitEstimator
from .types import Event, Outbox, Pending, RowResult
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

    def __init__(
        self, settings: ServerSettings, metrics: Metrics, model_path: str, adapter_dir: Path
    ) -> None:
        self.settings = settings
        self.metrics = metrics
        self.model_path = model_path
        self.adapter_dir = adapter_dir
        self.model: AdaptedModel | None = None
        self.cache: AdapterCache | None = None
        self.queue: PendingQueue[Pending] = PendingQueue(settings.max_queue)
        self.waits = WaitEstimator()
        self.ready = threading.Event()
        self._booted = threading.Event()
        self.stopping = False
        self.load_error: BaseException | None = None
        self.worker: DeviceWorker | None = None
        self._thread: threading.Thread | None = None
        self._tokenizer = None
        self.started_at = time.time()

    # ------------------------------------------------------------------ life cycle

    def start(self) -> None:
        """Start the device thread: it loads the model, preloads/pins adapters, warms up, then serves.

        Everything that runs the model runs on that one thread. On a CPU, torch's OpenMP keeps one
        pool of worker threads per thread that calls it, and with more pool threads than cores every
        pool stops spin-waiting: a decoder step of the demo model took 3.5x longer on a second thread
        than on the first (``docs/performance.md``). Other threads run torch with one intra-op thread
        (``single_intra_op_thread``)."""
        self._thread = threading.Thread(target=self._boot_and_run, name="inputtune-device", daemon=True)
        self._thread.start()

    def wait_started(self) -> None:
        """Block until the model is loaded and the device serves (or raise the start-up error)."""
        self._booted.wait()
        if self.load_error is not None:
            raise self.load_error

    def _boot_and_run(self) -> None:
        try:
            self._boot()
        finally:
            self._booted.set()
        if self.worker is None:
            return
        try:
            self.worker.run()
        except BaseException as e:  # a bug outside any batch: say so on /ready, fail what waits
            self.load_error = e
            self.ready.clear()
            log.critical("the device thread stopped", exc_info=e)
            left = Outbox()
            for row in [*self.worker.running, *self.queue.drain()]:
                left.put(row.payload, NotReadyError(f"the device thread stopped: {e}"))
            left.flush()

    def _boot(self) -> None:
        try:
            s = self.settings
            torch.set_grad_enabled(False)
            model = AdaptedModel.load(
                self.model_path, device=s.device, dtype=s.dtype, num_slots=s.device_slots
            )
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
                # refuse to serve a decoder (compiled or not) that disagrees with the base model
                StepDecoder.of(model.base.model, compile=s.compile_decoder).self_check()
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
                max_prefill_tokens=s.max_prefill_tokens,
            )
            self.worker = DeviceWorker(
                model,
                self.cache,
                self.queue,
                self.metrics,
                policy,
                continuous,
                self.waits,
                compile_decoder=s.compile_decoder,
            )
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

    def stop(self, timeout_s: float) -> None:
        """Finish queued rows within ``timeout_s``, then fail whatever is left with 503."""
        self.stopping = True
        self.ready.clear()
        self.queue.close()
        self._booted.wait()  # a server stopped while loading finishes loading first
        if self._thread is not None:
            self._thread.join(timeout_s)
            if self._thread.is_alive():
                log.warning("drain timeout (%.1f s) reached with work queued", timeout_s)
        left = Outbox()
        for row in self.queue.drain():
            left.put(row.payload, NotReadyError("the server shut down before this request ran"))
        left.flush()

    def status(self) -> EngineStatus:
        if self.ready.is_set() and self.model is not None:
            base = self.model.base
            return EngineStatus(
                True, self.model_path, str(base.device), str(base.dtype).replace("torch.", "")
            )
        if self.load_error is not None:
            started = self.worker is not None
            reason = f"{'the device thread stopped' if started else 'start-up failed'}: {self.load_error}"
        else:
            reason = "shutting down" if self.stopping else "the model is loading"
        return EngineStatus(False, self.model_path, reason=reason)

    @property
    def model_id(self) -> str:
        """The base model's id on the OpenAI routes."""
        if self.settings.served_model_name:
            return self.settings.served_model_name
        if self.settings.model is None:
            return "inputtune-demo"
        return Path(self.model_path).name or self.model_path

    def model_cards(self) -> tuple[dict, list[dict]]:
        """The base model's card and every adapter file's (OpenAI's model objects; blocking)."""
        cache = self._loaded()[1]
        base = {"id": self.model_id, "created": int(self.started_at), "root": self.model_path, "parent": None}
        adapters = []
        for name in cache.names_on_disk():
            try:
                created = int(cache.path(name).stat().st_mtime)
            except OSError:
                continue  # removed meanwhile
            adapters.append({"id": name, "created": created, "root": name, "parent": self.model_id})
        return base, adapters

    @property
    def tokenizer(self):
        """The front's tokenizer (token texts for logprobs and details; the device thread has its own)."""
        if self._tokenizer is None:
            raise NotReadyError("the model is still loading")
        return self._tokenizer

    def queue_depth(self) -> int:
        return len(self.queue)

    def update_metrics(self) -> None:
        """Refresh the occupancy gauges (read at scrape time: rows and adapters running and waiting)."""
        running = self.worker.running if self.worker is not None else ()
        self.metrics.queue_depth.set(len(self.queue))
        self.metrics.set_occupancy(
            [_name(r.payload.entry) for r in running],
            [_name(r.payload.entry) for r in self.queue.snapshot()],
            self.settings.device_slots,
        )

    def _loaded(self) -> tuple[AdaptedModel, AdapterCache]:
        """The model and cache once loading is done and the server is not draining; else NotReadyError."""
        if not self.ready.is_set() or self.model is None or self.cache is None:
            raise NotReadyError(
                "the server is shutting down" if self.stopping else "the model is still loading"
            )
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
            except AdapterError:  # broken, unreadable or just removed: GET /adapters/NAME says which
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

    async def submit(
        self,
        adapter: str | None,
        texts: Sequence[str],
        params: GenerationParams | Sequence[GenerationParams],
        truncate: bool | int = False,
        stream: bool = False,
    ) -> list[RowStream]:
        """Queue one row per text (``params`` one for all, or one per text) and return their streams.

        Raises before anything is queued when the request cannot run (unknown adapter, input too
        long, queue full, not ready), so a caller can still answer with a plain error."""
        model, cache = self._loaded()
        self._admit_or_refuse(len(texts))  # first: shedding load must cost as little as possible
        entry = None
        if adapter is not None:
            entry = cache.cached(adapter) or await asyncio.to_thread(cache.resolve, adapter)
        ids = self.encode(model, texts, truncate)
        row_params = [params] * len(ids) if isinstance(params, GenerationParams) else list(params)
        loop = asyncio.get_running_loop()
        prompt = entry.prompt_length if entry else 0
        rows = [
            Row(
                tokens=len(r) + prompt,
                adapter=entry,
                pinned=bool(entry and entry.pinned),
                payload=Pending(
                    r, entry, RowDecoding.start(p, model.tokenizer, stream), asyncio.Queue(), loop, stream
                ),
            )
            for r, p in zip(ids, row_params, strict=True)
        ]
        try:
            self.queue.put(rows)
        except QueueFullError as e:
            self.metrics.rejected_rows.labels("queue_full").inc(len(rows))
            room = self.settings.max_batch_size - (len(self.worker.running) if self.worker else 0)
            e.retry_after_s = max(1, math.ceil(self.waits.expected_wait(len(self.queue), room)))
            raise
        self.metrics.queue_depth.set(len(self.queue))
        return [RowStream(row, self.metrics, self.settings.request_timeout_s) for row in rows]

    def _admit_or_refuse(self, rows: int) -> None:
        """Refuse at once (429, with an honest Retry-After) a request that would wait longer than
        max_queue_wait_s for the device."""
        limit = self.settings.max_queue_wait_s
        if not limit:
            return
        running = len(self.worker.running) if self.worker is not None else 0
        room = self.settings.max_batch_size - running
        expected = self.waits.expected_wait(len(self.queue) + rows - 1, room)
        if expected > limit:
            self.metrics.rejected_rows.labels("overloaded").inc(rows)
            raise OverloadedError(expected, limit, max(1, math.ceil(expected - limit)))

    async def generate(
        self,
        adapter: str | None,
        texts: Sequence[str],
        params: GenerationParams | Sequence[GenerationParams],
        truncate: bool | int = False,
    ) -> list[RowResult]:
        """Every row's result (a non-streamed answer is a stream collected); rows still running are
        cancelled if the caller goes away or one of them fails."""
        streams = await self.submit(adapter, texts, params, truncate)
        try:
            return list(await asyncio.gather(*(s.result() for s in streams)))
        finally:
            for s in streams:
                s.cancel()

    def encode(self, model: AdaptedModel, texts: Sequence[str], truncate: bool | int) -> list[list[int]]:
        """Token ids of the texts; an input longer than the limit is refused, or with ``truncate``
        cut to it (``truncate`` N: to N tokens), keeping its closing EOS/separator."""
        ids = encode_sources(self._tokenizer, texts, model.is_encoder_decoder)
        limit = self.settings.max_input_tokens
        if truncate is not True and truncate:  # an int: the caller's own limit, within the server's
            limit = min(limit, max(2, int(truncate)))
        for i, row in enumerate(ids):
            if len(row) > limit:
                if not truncate:
                    raise InputTooLongError(
                        f"input {i} has {len(row)} tokens but the limit is {limit}: shorten it or send "
                        '"truncate": true in parameters'
                    )
                ids[i] = row[: limit - 1] + row[-1:]  # keep the closing EOS/separator
        return ids


def _name(entry: AdapterEntry | None) -> str | None:
    return None if entry is None else entry.name


class RowStream:
    """The event-loop side of one queued row: its tokens as they come (streamed rows), then its result.

    ``cancel()`` (or leaving ``tokens()`` early) tells the device thread to drop the row: from the
    queue before it runs, or from the running batch before the next step.
    """

    def __init__(self, row: Row[Pending], metrics: Metrics, timeout_s: float) -> None:
        self.row = row
        self.metrics = metrics
        self.timeout_s = timeout_s
        self._deadline = asyncio.get_running_loop().time() + timeout_s
        self._ahead: Event | None = None  # an event taken from the queue early (to see the end coming)
        self._result: RowResult | None = None
        self._failed = False

    @property
    def pending(self) -> Pending:
        return self.row.payload

    async def _next(self) -> StreamToken | RowResult:
        event, self._ahead = self._ahead, None
        if event is None:
            try:
                async with asyncio.timeout_at(self._deadline):
                    event = await self.pending.events.get()
            except TimeoutError as e:
                self.cancel()
                raise RequestTimeoutError(
                    f"the request waited more than {self.timeout_s:.0f} s: the server is overloaded"
                ) from e
        if isinstance(event, BaseException):
            self._failed = True
            raise event
        return event

    async def tokens(self) -> AsyncIterator[tuple[StreamToken, bool]]:
        """(token, last) as the device produces them: ``last`` is True for the token that ends the row
        (its result is then ready: ``result()`` returns at once). Leaving the loop early cancels the row."""
        try:
            while self._result is None:
                event = await self._next()
                if isinstance(event, RowResult):
                    self._result = event
                    continue
                last = False
                if not self.pending.events.empty():  # the step that ended the row delivered both
                    ahead = self.pending.events.get_nowait()
                    if isinstance(ahead, RowResult):
                        self._result, last = ahead, True
                    else:
                        self._ahead = ahead
                yield event, last
        finally:
            if self._result is None:
                self.cancel()

    async def result(self) -> RowResult:
        """The row's result (tokens not yet taken are skipped)."""
        while self._result is None:
            event = await self._next()
            if isinstance(event, RowResult):
                self._result = event
        return self._result

    def cancel(self) -> None:
        """Nobody waits for this row any more: the device thread drops it (no-op once it ended)."""
        p = self.pending
        if self._result is not None or self._failed or p.cancelled:
            return
        p.cancelled = True
        self.row.cancelled = True  # the queue skips it if it has not run yet
        self.metrics.cancelled_rows.labels("running" if p.admitted else "queued").inc()


def single_intra_op_thread() -> None:
    """Initializer of the threads that are not the device thread (they load adapter files): torch on
    one intra-op thread there, so that no second OpenMP pool competes with the device's."""
    torch.set_num_threads(1)
