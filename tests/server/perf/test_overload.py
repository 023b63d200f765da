"""Past capacity, measured from outside (bounded: a few seconds a level): fast refusals with an honest
Retry-After instead of long waits, no lost or wrong answer, quick recovery; abandoned requests leave
no work behind; a soak with adapters churning keeps memory and descriptors flat."""

from __future__ import annotations

import os
import time

import pytest

from server.perf.bench.overload import abandoned, measure
from server.perf.bench.soak import soak
from server.perf.loadtest.plan import LoadSpec
from tests.conftest import TEXTS

WAIT_S = 0.5  # max_queue_wait_s
DURATION_S = 3.0  # of each load level
TOKENS = {"max_new_tokens": 64, "min_new_tokens": 64}


def spec_for(url: str) -> LoadSpec:
    return LoadSpec(
        url,
        rate=1.0,
        duration_s=1.0,
        adapters=["e2e", "fr-en", "dart", None],
        inputs=TEXTS,
        parameters=TOKENS,
        timeout_s=30,
    )


def test_overload_is_shed_fast_and_nothing_is_lost(served_process):
    with served_process(
        max_queue_wait_s=WAIT_S, request_timeout_s=30, max_batch_size=4, max_wait_ms=2
    ) as server:
        figures = measure(spec_for(server.url), [2.0, 4.0], DURATION_S, verify_count=8, concurrency=16)
    print(
        {k: v for k, v in figures.items() if k != "levels"},
        [
            (lv["level"], lv["ok"], lv["refused"], lv["queue_ms"], lv["refused_p99_ms"])
            for lv in figures["levels"]
        ],
    )
    for level in figures["levels"]:
        assert level["lost"] == 0, level["errors"]  # every request got its answer or a refusal
        assert not level["mismatches"] and level["verify_problems"] == []  # and each answer was its own
        assert set(level["errors"]) <= {"429"}
        assert level["refused"] > 0  # at 2x and 4x capacity the excess is refused ...
        assert all(r is not None and int(r) >= 1 for r in level["retry_after_s"])  # ... saying when to retry
        # ... while the server keeps serving (it shares these 2 cores with the load generator and
        # the refusals' HTTP work, so less than its capacity) ...
        assert level["ok"] >= 0.25 * figures["capacity_rps"] * DURATION_S
        # ... and what it admits starts within about max_queue_wait_s. The limit is on the expected
        # wait, from the last second's service rate; on 2 cores shared with the load generator that
        # rate swings by a third from one second to the next, so the p99 wait is 1.2-2.1x the limit
        # (docs/reliability.md); the bound here leaves room for that noise, not for a queue
        assert level["queue_ms"]["p99"] <= 1000 * 3 * WAIT_S, level["queue_ms"]
        service_ms = level["inference_ms"]["p99"]
        assert level["latency_ms"]["p99"] <= 1000 * 3 * WAIT_S + service_ms + 300, level["latency_ms"]
        assert level["refused_p99_ms"] < 500  # refusals are fast
    assert figures["recovery_s"] is not None and figures["recovery_s"] <= 2.0


def test_abandoned_requests_leave_no_work_behind(served_process):
    with served_process(max_batch_size=32, max_queue_wait_s=0) as server:
        figures = abandoned(spec_for(server.url), 200, give_up_s=1.0)
    print(figures)
    left = figures["count"] - figures["answered_in_time"]  # (the first batch may finish in time)
    assert left >= figures["count"] // 2
    assert figures["cancelled"] == left and figures["counted_499"] == left
    assert figures["drained_s"] < 2.0
    assert figures["tokens_while_waited"] > 0  # the device was working on them when the clients left ...
    assert figures["tokens_after_give_up"] < 0.05 * figures["tokens_if_run"]  # ... and stopped within steps
    assert figures["next_request_status"] == 200 and figures["next_request_ms"] < 1500


def test_a_short_soak_stays_flat(served_process, adapter_dir):
    with served_process(admin_api_key="soak-admin-key", max_queue_wait_s=5) as server:
        files = [
            (adapter_dir / "e2e.safetensors").read_bytes(),
            (adapter_dir / "fr-en.safetensors").read_bytes(),
        ]
        spec = LoadSpec(
            server.url,
            rate=8.0,
            duration_s=15.0,
            adapters=["e2e", "dart", None],
            inputs=TEXTS,
            parameters={"max_new_tokens": 8, "min_new_tokens": 8},
            timeout_s=30,
        )
        start = time.monotonic()
        figures = soak(spec, server.pid, "soak-admin-key", files, duration_s=15.0)
    print({k: v for k, v in figures.items() if k != "samples"}, round(time.monotonic() - start, 1))
    assert figures["unexpected_errors"] == [] and figures["mismatches"] == []
    assert not (adapter_dir / "soak-churn.safetensors").exists()  # the churned adapter is gone after
    assert figures["churn"].get("upload 201", 0) >= 10 and figures["churn"].get("delete 204", 0) >= 5
    assert figures["ok"] >= 0.8 * figures["requests"]
    # a short run on a noisy machine: the bounds are loose; the long soak's figures are in
    # docs/reliability.md
    assert figures["fds"]["last"] - figures["fds"]["first"] <= 10
    assert figures["rss_mb"]["last"] - figures["rss_mb"]["first"] <= 150


if os.environ.get("CI_SKIP_SLOW"):
    pytestmark = pytest.mark.skip("CI_SKIP_SLOW")
