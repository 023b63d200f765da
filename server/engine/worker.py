"""The device thread: takes rows from the queue and runs the adapted model on them.

Two schedules:
- static: take a batch, run it to its end with one ``generate`` call, repeat;
- continuous (T5/mT5 bases): rows join the running batch between decoder steps and leave
  when they finish. Joining rows of many adapters get their adapters applied and one
  encoder pass together; then every step is one decoder pass for all running rows, and each
  streamed row's new token goes out after the step. Beam-search rows still run as static
  batches between steps.
A row whose caller went away (cancelled) leaves the batch before the next step. A failure fails
only the rows of the failing call; the thread keeps going.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass

import torch

from adapters import AdaptedModel, GenerationOutput
from adapters.decoding import ContinuousBatch

from ..errors import BatchFailedError, DeviceOutOfMemoryError
from ..metrics import Metrics
from .cache import AdapterCache
from .queue import BatchPolicy, PendingQueue, Row, WaitEstimator
from .types import Outbox, Pending, RowResult

log = logging.getLogger(__name__)

Job = Row[Pending]


@dataclass
class Admission:
    """When a row joined the running batch, and how many adapters joined with it."""

    time: float
    adapters: int


class DeviceWorker:
    def __init__(
        self,
        model: AdaptedModel,
        cache: AdapterCache,
        queue: PendingQueue[Pending],
        metrics: Metrics,
        policy: BatchPolicy,
        continuous: bool,
        waits: WaitEstimator | None = None,
        compile_decoder: bool = False,
    ) -> None:
        self.model = model
        self.waits = waits or WaitEstimator()
        self.cache = cache
        self.queue = queue
        self.metrics = metrics
        self.policy = policy
        self.continuous = continuous
        self.compile_decoder = compile_decoder  # the continuous decoder step through torch.compile
        self.running: tuple[Job, ...] = ()  # rows on the device now (a snapshot, read by /metrics)

    def run(self) -> None:
        if self.continuous:
            self._run_continuous()
        else:
            while (batch := self.queue.take_batch(self.policy)) is not None:
                self.metrics.queue_depth.set(len(self.queue))
                self.run_static(batch)

    # ------------------------------------------------------------------ static

    def run_static(self, batch: list[Job]) -> None:
        """One generate call for the batch; on a device out of memory, each half alone (down to one row,
        which then gets a 503 to retry)."""
        start = time.monotonic()
        pending = [row.payload for row in batch]
        for p in pending:
            p.admitted = True
        self.running = (*self.running, *batch)
        outbox = Outbox()
        try:
            self.cache.acquire([p.entry for p in pending if p.entry is not None])
            outputs = self.model.generate(
                [p.ids for p in pending],
                [p.slot for p in pending],
                [p.params for p in pending],
                decodings=[p.decoding for p in pending],
            )
        except Exception as e:  # a failing batch must not take the server down
            self.running = tuple(r for r in self.running if r not in batch)
            if _out_of_memory(e) and len(batch) > 1:
                _free_device_memory(self.model)
                log.warning("device out of memory with %d rows: running them in two halves", len(batch))
                half = len(batch) // 2
                self.run_static(batch[:half])
                self.run_static(batch[half:])
                return
            self._fail(batch, e, outbox)
            outbox.flush()
            return
        self.running = tuple(r for r in self.running if r not in batch)
        elapsed = time.monotonic() - start
        distinct = _distinct_adapters(batch)
        self._observe_call(elapsed, len(batch), distinct)
        for row, out in zip(batch, outputs, strict=True):
            if row.payload.stream:  # the static path delivers a streamed row's tokens at the end
                outbox.tokens(row.payload)
            self._resolve(row, out, start, elapsed, len(batch), distinct, outbox)
        outbox.flush()
        self.waits.record(len(batch), time.monotonic() - start)

    # ------------------------------------------------------------------ continuous

    def _run_continuous(self) -> None:
        running: ContinuousBatch[Job] = ContinuousBatch(self.model, compile=self.compile_decoder)
        admitted: dict[Job, Admission] = {}  # the batch's keys are the rows themselves
        busy_since = time.monotonic()  # the device thread's time between reports, idle waits left out
        while True:
            gone = {row for row in admitted if row.payload.cancelled}
            if gone:
                running.drop(gone)
                for row in gone:
                    del admitted[row]
            if len(running):
                room = self.policy.max_rows - len(running)
                rows = self.queue.take_nowait(self.policy.with_rows(room)) if room > 0 else []
            else:
                self.running = ()
                # an idle device starts at once: rows that come a moment later join at the next step
                # (waiting max_wait_ms for company is the static schedule's trade, not this one's)
                rows = self.queue.take_batch(self.policy.with_wait(0.0)) or []
                if not rows and self.queue.closed:
                    return
                busy_since = time.monotonic()
            self.metrics.queue_depth.set(len(self.queue))
            beams = [r for r in rows if r.payload.params.num_beams > 1]
            joining = [r for r in rows if r.payload.params.num_beams == 1]
            if beams:
                self.run_static(beams)  # (which reports its own rows and time)
                busy_since = time.monotonic()
            start = time.monotonic()
            outbox = Outbox()
            try:
                if joining:
                    pending = [r.payload for r in joining]
                    for p in pending:
                        p.admitted = True
                    self.running = (*admitted, *joining)
                    self.cache.acquire([p.entry for p in pending if p.entry is not None])
                    running.admit(
                        joining,
                        [p.ids for p in pending],
                        [p.slot for p in pending],
                        [p.params for p in pending],
                        [p.decoding for p in pending],
                    )
                    distinct = _distinct_adapters(joining)
                    for r in joining:
                        admitted[r] = Admission(start, distinct)
                finished = running.step()
                # Give the event loop the interpreter lock between steps: the step releases it only
                # for microseconds at a time, and without this pause a busy device thread starved the
                # event loop (refusals under overload took seconds; tests/server/perf/test_overload.py)
                time.sleep(0.0005)
            except Exception as e:
                self._fail([*admitted, *(r for r in joining if r not in admitted)], e, outbox)
                outbox.flush()
                admitted.clear()
                running = ContinuousBatch(self.model, compile=self.compile_decoder)
                continue
            now = time.monotonic()
            self.waits.record(len(finished), now - busy_since)
            busy_since = now
            if admitted:
                self._observe_call(now - start, len(admitted), _distinct_adapters(admitted))
            for row in admitted:
                if row.payload.stream:
                    outbox.tokens(row.payload)
            for row, out in finished:
                admission = admitted.pop(row)
                self._resolve(
                    row,
                    out,
                    admission.time,
                    now - admission.time,
                    len(running) + len(finished),
                    admission.adapters,
                    outbox,
                )
            outbox.flush()
            if finished:
                self.running = tuple(admitted)

    # ------------------------------------------------------------------ bookkeeping

    def _observe_call(self, seconds: float, rows: int, adapters: int) -> None:
        m = self.metrics
        m.batches.labels("ok").inc()
        m.inference_time.observe(seconds)
        m.batch_rows.observe(rows)
        m.batch_adapters.observe(adapters)

    def _resolve(
        self,
        row: Job,
        out: GenerationOutput,
        start: float,
        elapsed: float,
        rows: int,
        adapters: int,
        outbox: Outbox,
    ) -> None:
        m = self.metrics
        m.queue_time.observe(start - row.arrival)
        m.generated_tokens.inc(out.generated_tokens)
        m.input_tokens.inc(out.input_tokens)
        outbox.put(row.payload, RowResult(out, start - row.arrival, elapsed, rows, adapters))

    def _fail(self, rows: list[Job], error: Exception, outbox: Outbox) -> None:
        failure: Exception
        if _out_of_memory(error):
            _free_device_memory(self.model)
            log.error("device out of memory with %d rows: they get 503", len(rows))
            self.metrics.batches.labels("out_of_memory").inc()
            failure = DeviceOutOfMemoryError(
                "the device ran out of memory running the batch that held this request: retry"
            )
        else:
            log.error("model call with %d rows failed", len(rows), exc_info=error)
            self.metrics.batches.labels("error").inc()
            failure = BatchFailedError(f"generation failed for the batch holding this request: {error}")
        for row in rows:
            outbox.put(row.payload, failure)


def _out_of_memory(error: BaseException) -> bool:
    return isinstance(error, torch.OutOfMemoryError)


def _free_device_memory(model: AdaptedModel) -> None:
    if model.base.device.type == "cuda":
        torch.cuda.empty_cache()


def _distinct_adapters(rows) -> int:
    """Distinct adapter versions among rows (the plain base counts as one)."""
    return len({id(r.payload.entry) for r in rows})
