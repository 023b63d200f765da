"""The pending queue and the batch builder. Pure logic: no tensors, no asyncio.

A row is one input text of one request. The device thread asks for a batch when it is
free; the builder waits up to ``max_wait`` after the oldest row for the batch to fill,
then takes rows oldest first while they fit: at most ``max_rows`` rows, ``max_tokens``
input tokens, and ``max_adapters`` distinct unpinned adapters. Rows that do not fit stay
at the head of the queue, so they lead the next batch: nothing starves, nothing is lost.
"""

from __future__ import annotations

import dataclasses
import threading
import time
from collections import deque
from collections.abc import Callable, Hashable
from dataclasses import dataclass, field
from typing import Generic, TypeVar

from ..errors import NotReadyError, QueueFullError

P = TypeVar("P")


@dataclass(eq=False)
class Row(Generic[P]):
    """One row waiting for the device. ``adapter`` is any hashable identity (None = base model);
    ``payload`` is what the device needs to run the row and answer it (the engine's ``Pending``).
    Rows compare by identity, so a row is its own key."""

    tokens: int
    adapter: Hashable | None
    pinned: bool = False
    arrival: float = field(default_factory=time.monotonic)
    cancelled: bool = False
    payload: P = None  # type: ignore[assignment]  # always set by the engine; the queue never reads it


@dataclass(frozen=True)
class BatchPolicy:
    max_rows: int
    max_tokens: int
    max_wait_s: float
    max_adapters: int
    per_adapter: bool = False  # baseline mode: every batch holds one adapter (the base model counts as one)
    max_prefill_tokens: int | None = None  # input tokens joining a running batch between two steps

    def with_wait(self, seconds: float) -> BatchPolicy:
        return dataclasses.replace(self, max_wait_s=seconds)

    def with_rows(self, rows: int) -> BatchPolicy:
        """The caps for rows joining a running batch between two decoder steps: at most ``rows``
        rows and ``max_prefill_tokens`` input tokens (chunked prefill: a burst of long inputs joins
        over several steps instead of stalling the rows decoding), taken without waiting."""
        tokens = min(self.max_tokens, self.max_prefill_tokens or self.max_tokens)
        return dataclasses.replace(self, max_rows=rows, max_tokens=tokens, max_wait_s=0.0)


def select(rows: list[Row[P]], policy: BatchPolicy) -> tuple[list[Row[P]], list[Row[P]]]:
    """Split pending rows (oldest first) into (batch, rest) under the policy's caps."""
    batch: list[Row[P]] = []
    rest: list[Row[P]] = []
    tokens = 0
    adapters: set[Hashable] = set()
    only: list[Hashable | None] = []  # per-adapter mode: the adapter of the oldest row
    for row in rows:
        if row.cancelled:
            continue
        if policy.per_adapter:
            if not only:
                only.append(row.adapter)
            if row.adapter is not only[0]:
                rest.append(row)
                continue
        new_adapter = row.adapter is not None and not row.pinned and row.adapter not in adapters
        fits = (
            len(batch) < policy.max_rows
            and (not batch or tokens + row.tokens <= policy.max_tokens)  # an oversized row still runs alone
            and (not new_adapter or len(adapters) < policy.max_adapters)
        )
        if fits:
            batch.append(row)
            tokens += row.tokens
            if new_adapter:
                adapters.add(row.adapter)
        else:
            rest.append(row)
    return batch, rest


class PendingQueue(Generic[P]):
    """Thread-safe FIFO of rows with a bound; the device thread takes batches from it."""

    def __init__(self, max_rows: int, clock: Callable[[], float] = time.monotonic) -> None:
        self.max_rows = max_rows
        self._rows: deque[Row[P]] = deque()
        self._cond = threading.Condition()
        self._closed = False
        self._clock = clock

    def __len__(self) -> int:
        with self._cond:
            return len(self._rows)

    def snapshot(self) -> list[Row[P]]:
        """The rows waiting now, oldest first (a copy; cancelled rows left out)."""
        with self._cond:
            return [row for row in self._rows if not row.cancelled]

    def put(self, rows: list[Row[P]]) -> None:
        """Add all rows of one request, or none of them (QueueFullError)."""
        with self._cond:
            if self._closed:
                raise NotReadyError("the server is shutting down")
            if len(self._rows) + len(rows) > self.max_rows:
                raise QueueFullError(len(self._rows), self.max_rows)
            self._rows.extend(rows)
            self._cond.notify_all()

    @property
    def closed(self) -> bool:
        return self._closed

    def close(self) -> None:
        """No more rows are accepted; take_batch drains what is queued, then returns None."""
        with self._cond:
            self._closed = True
            self._cond.notify_all()

    def drain(self) -> list[Row[P]]:
        """Remove and return every queued row (used when shutting down past the drain timeout)."""
        with self._cond:
            rows = list(self._rows)
            self._rows.clear()
            return rows

    def take_batch(self, policy: BatchPolicy) -> list[Row[P]] | None:
        """Block until a batch is ready; None once closed and empty."""
        with self._cond:
            while True:
                while not self._rows and not self._closed:
                    self._cond.wait()
                if not self._rows:
                    return None
                deadline = self._rows[0].arrival + policy.max_wait_s
                while not self._closed and not self._full(policy):
                    remaining = deadline - self._clock()
                    if remaining <= 0:
                        break
                    self._cond.wait(remaining)
                batch, rest = select(list(self._rows), policy)
                self._rows = deque(rest)
                if batch:
                    return batch
                # everything pending was cancelled: wait again

    def take_nowait(self, policy: BatchPolicy) -> list[Row[P]]:
        """Whatever fits the policy right now, without waiting (may be empty)."""
        with self._cond:
            if not self._rows:
                return []
            batch, rest = select(list(self._rows), policy)
            self._rows = deque(rest)
            return batch

    def _full(self, policy: BatchPolicy) -> bool:
        return len(self._rows) >= policy.max_rows or sum(r.tokens for r in self._rows) >= policy.max_tokens


class WaitEstimator:
    """How long a new row would wait for the device, from the recent service rate.

    The device thread reports, after each step (or static batch), how many rows finished and how
    long it was busy since its last report (its whole loop, bookkeeping included; time blocked
    waiting for work is not counted). The service rate is rows finished per busy second between two
    finishing reports, the later one the last, over at least ``window_s`` busy seconds and
    ``min_rows`` rows when there are that many (over everything so far otherwise). Measuring from
    one finish to another keeps it right when rows finish in bursts (a batch of rows of one length
    ends together): a window cut between bursts would count a burst without the time that made it.
    A new row waits for the rows queued ahead of it beyond the room the running batch has. With no
    finished row yet the estimate is 0. Pure logic.
    """

    def __init__(self, window_s: float = 2.0, min_rows: int = 16) -> None:
        self.window_s = window_s
        self.min_rows = min_rows
        self._busy = 0.0  # busy seconds reported so far
        self._rows = 0  # rows finished so far
        # (busy, rows) so far at each report where rows finished; (0, 0) stands for the start
        self._finishes: deque[tuple[float, int]] = deque([(0.0, 0)])
        self._lock = threading.Lock()

    def record(self, finished: int, busy_s: float) -> None:
        with self._lock:
            self._busy += busy_s
            if not finished:
                return
            self._rows += finished
            self._finishes.append((self._busy, self._rows))
            # keep as the first finish the latest one from which the last spans the window
            while len(self._finishes) > 2 and self._spans_window(self._finishes[1]):
                self._finishes.popleft()

    def _spans_window(self, since: tuple[float, int]) -> bool:
        busy, rows = since
        last_busy, last_rows = self._finishes[-1]
        return last_busy - busy >= self.window_s and last_rows - rows >= self.min_rows

    def rate(self) -> float | None:
        """Rows finished per busy second (None before any row finished)."""
        with self._lock:
            (first_busy, first_rows), (last_busy, last_rows) = self._finishes[0], self._finishes[-1]
        busy = last_busy - first_busy
        return (last_rows - first_rows) / busy if busy > 0 else None

    def expected_wait(self, ahead: int, room: int) -> float:
        """Seconds until a row queued behind ``ahead`` rows starts, with ``room`` free places in the
        running batch (0 when it would start at once or nothing is known)."""
        rate = self.rate()
        waiting = ahead - max(room, 0)
        if rate is None or waiting < 0:
            return 0.0
        return (waiting + 1) / rate
