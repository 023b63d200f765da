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

    def with_rows(self, rows: int) -> BatchPolicy:
        """The same caps for at most ``rows`` rows, taken without waiting (rows joining a running batch)."""
        return dataclasses.replace(self, max_rows=rows, max_wait_s=0.0)


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
