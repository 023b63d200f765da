"""What travels between the event loop and the device thread: a row's request, its stream of events
and its result.

The device thread never touches asyncio objects directly: it hands items to ``Outbox``, which
delivers them on the event loop in one call per decoder step (``call_soon_threadsafe``).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import defaultdict
from dataclasses import dataclass, field

from adapters import GenerationOutput, GenerationParams
from adapters.decoding.sampling import RowDecoding, StreamToken

from .cache import AdapterEntry


@dataclass
class RowResult:
    """One row's answer with the facts of the batch it ran in."""

    output: GenerationOutput
    queue_s: float
    inference_s: float
    batch_rows: int
    batch_adapters: int


Event = StreamToken | RowResult | BaseException  # tokens (streamed rows), then the result or the error


@dataclass(eq=False)
class Pending:
    """A row's request as the device thread needs it: its token ids, its adapter version, its
    decoding state, and the queue (on the event loop) its events go to."""

    ids: list[int]
    entry: AdapterEntry | None
    decoding: RowDecoding
    events: asyncio.Queue[Event]
    loop: asyncio.AbstractEventLoop
    stream: bool = False  # deliver tokens as they come, not only the result
    cancelled: bool = False  # set by the front when nobody waits any more; the device drops the row
    admitted: bool = False  # set by the device thread when the row joins a batch

    @property
    def params(self) -> GenerationParams:
        return self.decoding.params

    @property
    def slot(self) -> int:
        """The entry's device slot (0 = the plain base); valid once the cache acquired it."""
        if self.entry is None:
            return 0
        assert self.entry.device_slot is not None, "the row's adapter is not on the device"
        return self.entry.device_slot


@dataclass
class Outbox:
    """Events the device thread produced during one step, delivered on their loops in one call each."""

    items: dict[asyncio.AbstractEventLoop, list[tuple[Pending, Event]]] = field(
        default_factory=lambda: defaultdict(list)
    )

    def put(self, pending: Pending, event: Event) -> None:
        self.items[pending.loop].append((pending, event))

    def tokens(self, pending: Pending) -> None:
        """A streamed row's new tokens since the last step."""
        for token in pending.decoding.take_events():
            self.put(pending, token)

    def flush(self) -> None:
        for loop, items in self.items.items():
            with contextlib.suppress(RuntimeError):  # a closed loop: nobody is left to answer
                loop.call_soon_threadsafe(_deliver, items)
        self.items = defaultdict(list)


def _deliver(items: list[tuple[Pending, Event]]) -> None:
    for pending, event in items:
        pending.events.put_nowait(event)
