"""The batch builder: caps on rows, tokens and distinct adapters; oldest first; nothing lost."""

from __future__ import annotations

import threading
import time

import pytest

from server.engine.queue import BatchPolicy, PendingQueue, Row, WaitEstimator, select
from server.errors import QueueFullError


def rows(*specs):
    return [Row(tokens=t, adapter=a, arrival=i) for i, (t, a) in enumerate(specs)]


def test_select_caps_rows_tokens_and_adapters():
    pending = rows((10, "a"), (10, "b"), (10, "c"), (10, "a"), (10, None), (10, "d"), (10, "b"))
    batch, rest = select(pending, BatchPolicy(max_rows=5, max_tokens=1000, max_wait_s=0, max_adapters=2))
    assert [(r.adapter) for r in batch] == ["a", "b", "a", None, "b"]
    assert [r.adapter for r in rest] == ["c", "d"]  # stay at the head for the next batch, in order
    batch, rest = select(pending, BatchPolicy(max_rows=10, max_tokens=25, max_wait_s=0, max_adapters=9))
    assert len(batch) == 2 and len(rest) == 5


def test_oversized_row_runs_alone_and_cancelled_rows_vanish():
    pending = rows((500, "a"), (5, "a"))
    pending.append(Row(tokens=1, adapter="x", cancelled=True))
    batch, rest = select(pending, BatchPolicy(8, 100, 0, 4))
    assert [r.tokens for r in batch] == [500] and [r.tokens for r in rest] == [5]


def test_pinned_adapters_do_not_count():
    pending = [Row(1, "p", pinned=True), Row(1, "a"), Row(1, "q", pinned=True), Row(1, "b")]
    batch, rest = select(pending, BatchPolicy(8, 100, 0, max_adapters=1))
    assert [r.adapter for r in batch] == ["p", "a", "q"] and [r.adapter for r in rest] == ["b"]


def test_queue_bound_is_all_or_nothing():
    q = PendingQueue(max_rows=3)
    q.put(rows((1, "a"), (1, "a")))
    with pytest.raises(QueueFullError, match="2 of 3 rows"):
        q.put(rows((1, "b"), (1, "b")))
    assert len(q) == 2


def test_take_batch_waits_for_max_wait_then_takes_what_is_there():
    q = PendingQueue(max_rows=100)
    policy = BatchPolicy(max_rows=4, max_tokens=1000, max_wait_s=0.2, max_adapters=4)
    q.put([Row(1, "a")])
    late = threading.Timer(0.05, lambda: q.put([Row(1, "b")]))
    late.start()
    batch = q.take_batch(policy)
    assert [r.adapter for r in batch] == ["a", "b"]  # it waited for the late row
    q.put([Row(1, "c") for _ in range(4)])  # a full batch does not wait out a long max_wait
    start = time.monotonic()
    assert len(q.take_batch(BatchPolicy(4, 1000, 60.0, 4))) == 4
    assert time.monotonic() - start < 30
    q.close()
    assert q.take_batch(policy) is None


def test_per_adapter_mode_takes_one_adapter_per_batch():
    a, b = object(), object()
    pending = [Row(1, a), Row(1, b), Row(1, a), Row(1, None), Row(1, a)]
    batch, rest = select(pending, BatchPolicy(8, 100, 0, 8, per_adapter=True))
    assert [r.adapter for r in batch] == [a, a, a] and [r.adapter for r in rest] == [b, None]
    batch, rest = select(rest, BatchPolicy(8, 100, 0, 8, per_adapter=True))
    assert [r.adapter for r in batch] == [b] and [r.adapter for r in rest] == [None]


def test_wait_estimate_follows_the_recent_service_rate():
    waits = WaitEstimator(window_s=3.0, min_rows=4)
    assert waits.rate() is None and waits.expected_wait(ahead=50, room=0) == 0.0  # nothing known yet
    for _ in range(20):  # 10 rows a second: 1 row every 0.1 s of busy time
        waits.record(1, 0.1)
    assert waits.rate() == pytest.approx(10.0)
    assert waits.expected_wait(ahead=3, room=4) == 0.0  # room in the running batch: starts at once
    assert waits.expected_wait(ahead=9, room=4) == pytest.approx(0.6)  # 5 rows wait before it, then it
    for _ in range(40):  # the device slows down to 2 rows a second ...
        waits.record(1, 0.5)
    assert waits.rate() == pytest.approx(2.0)  # ... and past the window only the new rate counts
    assert waits.expected_wait(ahead=9, room=4) == pytest.approx(3.0)
    for _ in range(4):
        waits.record(0, 0.0)
    waits.record(0, 30.0)  # a long step without a finished row: the rate stays what was measured
    assert waits.rate() == pytest.approx(2.0)


def test_wait_estimate_is_right_when_rows_finish_in_bursts():
    """32 rows of one length run together and end together every second: the rate is 32 rows a
    second whenever it is read, just after a burst or just before the next."""
    waits = WaitEstimator(window_s=1.0, min_rows=16)
    seen = []
    for _ in range(5):
        for _ in range(99):
            waits.record(0, 0.01)
            seen.append(waits.rate())
        waits.record(32, 0.01)
        seen.append(waits.rate())
    assert all(r == pytest.approx(32.0) for r in seen[100:])


def test_rows_joining_a_running_batch_are_capped_by_the_prefill_budget():
    policy = BatchPolicy(max_rows=8, max_tokens=100, max_wait_s=0.5, max_adapters=8, max_prefill_tokens=25)
    pending = [Row(10, "a") for _ in range(6)]
    idle, _ = select(pending, policy)  # an idle device: up to max_tokens
    assert len(idle) == 6
    joining = policy.with_rows(8)
    assert (joining.max_rows, joining.max_tokens, joining.max_wait_s) == (8, 25, 0.0)
    batch, rest = select(pending, joining)  # between two steps: up to max_prefill_tokens
    assert len(batch) == 2 and len(rest) == 4
    assert select([Row(40, "a")], joining)[0] != []  # an input over the budget still joins, alone
    assert policy.with_wait(0.0).max_tokens == 100  # (what the idle device takes with)
