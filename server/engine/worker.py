"""The device thread: takes rows from the queue and runs the adapted model on them.

Two schedules:
- static: take a batch, run it to its end with one ``generate`` call, repeat;
- continuous (T5/mT5 bases): rows join the running batch between decoder steps and leave
  when they finish. Joining rows of many adapters get their adapters applied and one
  encoder pass together; then every step is one decoder pass for all running rows.
  Beam-search rows still run as static batches between steps.
A failure fails only the rows of the failing call; the thread keeps going.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from typing import Any, cast

from adapters import AdaptedModel
from adapters.decoding.continuous import ContinuousBatch

from ..metrics import Metrics
from .batcher import BatchPolicy, PendingQueue, Row
from .cache import AdapterCache

log = logging.getLogger(__name__)


class BatchFailedError(Exception):
    """The model call holding this row failed; the trace is in the server log."""


@dataclass
class RowResult:
    output: Any  # GenerationOutput
    queue_s: float
    inference_s: float
    batch_rows: int
    batch_adapters: int


class DeviceWorker:
    def __init__(
        self,
        model: AdaptedModel,
        cache: AdapterCache,
        queue: PendingQueue,
        metrics: Metrics,
        policy: BatchPolicy,
        continuous: bool,
    ) -> None:
        self.model = model
        self.cache = cache
        self.queue = queue
        self.metrics = metrics
        self.policy = policy
        self.continuous = continuous

    def run(self) -> None:
        if self.continuous:
            self._run_continuous()
        else:
            while (batch := self.queue.take_batch(self.policy)) is not None:
                self.metrics.queue_depth.set(len(self.queue))
                self.run_static(batch)

    # ------------------------------------------------------------------ static

    def run_static(self, batch: list[Row]) -> None:
        start = time.monotonic()
        pending = [row.payload for row in batch]
        try:
            self.cache.acquire([p.entry for p in pending if p.entry is not None])
            slot_ids = [p.entry.device_slot if p.entry else 0 for p in pending]
            outputs = self.model.generate([p.ids for p in pending], slot_ids, [p.params for p in pending])
        except Exception as e:  # a failing batch must not take the server down
            self._fail(batch, e)
            return
        elapsed = time.monotonic() - start
        distinct = len({id(p.entry) for p in pending})
        self._observe_call(elapsed, len(batch), distinct)
        for row, out in zip(batch, outputs, strict=True):
            self._resolve(row, out, start, elapsed, len(batch), distinct)

    # ------------------------------------------------------------------ continuous

    def _run_continuous(self) -> None:
        running = ContinuousBatch(self.model)
        admitted: dict[
            int, tuple[Row, float, int]
        ] = {}  # id(row) -> (row, admit time, adapters at admission)
        while True:
            if len(running):
                room = self.policy.max_rows - len(running)
                rows = self.queue.take_nowait(_with_rows(self.policy, room)) if room > 0 else []
            else:
                rows = self.queue.take_batch(self.policy) or []
                if not rows and self.queue.closed:
                    return
            self.metrics.queue_depth.set(len(self.queue))
            beams = [r for r in rows if r.payload.params.num_beams > 1]
            joining = [r for r in rows if r.payload.params.num_beams == 1]
            if beams:
                self.run_static(beams)
            start = time.monotonic()
            try:
                if joining:
                    pending = [r.payload for r in joining]
                    self.cache.acquire([p.entry for p in pending if p.entry is not None])
                    slot_ids = [p.entry.device_slot if p.entry else 0 for p in pending]
                    running.admit(
                        [id(r) for r in joining],
                        [p.ids for p in pending],
                        slot_ids,
                        [p.params for p in pending],
                    )
                    distinct = len({id(p.entry) for p in pending})
                    for r in joining:
                        admitted[id(r)] = (r, start, distinct)
                finished = running.step()
            except Exception as e:
                self._fail(
                    [row for row, _, _ in admitted.values()] + [r for r in joining if id(r) not in admitted],
                    e,
                )
                admitted.clear()
                running = ContinuousBatch(self.model)
                continue
            now = time.monotonic()
            if admitted:
                live = {id(r.payload.entry) for r, _, _ in admitted.values()}
                self._observe_call(now - start, len(admitted), len(live))
            for key, out in finished:
                row, admit_time, distinct = admitted.pop(cast(int, key))
                self._resolve(row, out, admit_time, now - admit_time, len(running) + len(finished), distinct)

    # ------------------------------------------------------------------ bookkeeping

    def _observe_call(self, seconds: float, rows: int, adapters: int) -> None:
        m = self.metrics
        m.batches.labels("ok").inc()
        m.inference_time.observe(seconds)
        m.batch_rows.observe(rows)
        m.batch_adapters.observe(adapters)

    def _resolve(self, row: Row, out, start: float, elapsed: float, rows: int, adapters: int) -> None:
        m = self.metrics
        m.queue_time.observe(start - row.arrival)
        m.generated_tokens.inc(out.generated_tokens)
        m.input_tokens.inc(out.input_tokens)
        row.payload.resolve(RowResult(out, start - row.arrival, elapsed, rows, adapters))

    def _fail(self, rows: list[Row], error: Exception) -> None:
        log.error("model call with %d rows failed", len(rows), exc_info=error)
        self.metrics.batches.labels("error").inc()
        failure = BatchFailedError(f"generation failed for the batch holding this request: {error}")
        for row in rows:
            row.payload.fail(failure)


def _with_rows(policy: BatchPolicy, rows: int) -> BatchPolicy:
    return BatchPolicy(rows, policy.max_tokens, 0.0, policy.max_adapters, policy.per_adapter)
