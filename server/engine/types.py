"""What travels between the event loop and the device thread: a row's request and its result."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

from adapters import GenerationOutput, GenerationParams

from .cache import AdapterEntry


@dataclass
class RowResult:
    """One row's answer with the facts of the batch it ran in."""

    output: GenerationOutput
    queue_s: float
    inference_s: float
    batch_rows: int
    batch_adapters: int


@dataclass(eq=False)
class Pending:
    """A row's request as the device thread needs it: its token ids, its adapter version, its
    decoding parameters, and the future (on the event loop) that answers it."""

    ids: list[int]
    entry: AdapterEntry | None
    params: GenerationParams
    future: asyncio.Future[RowResult]
    loop: asyncio.AbstractEventLoop

    @property
    def slot(self) -> int:
        """The entry's device slot (0 = the plain base); valid once the cache acquired it."""
        if self.entry is None:
            return 0
        assert self.entry.device_slot is not None, "the row's adapter is not on the device"
        return self.entry.device_slot

    def resolve(self, value: RowResult) -> None:
        self.loop.call_soon_threadsafe(_set_result, self.future, value)

    def fail(self, error: BaseException) -> None:
        self.loop.call_soon_threadsafe(_set_exception, self.future, error)


def _set_result(future: asyncio.Future, value: RowResult) -> None:
    if not future.done():
        future.set_result(value)


def _set_exception(future: asyncio.Future, error: BaseException) -> None:
    if not future.done():
        future.set_exception(error)
