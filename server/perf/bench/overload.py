"""`inputtune bench overload`: what a server does past its capacity, measured from outside.

Against a running server: the unloaded latency, the saturated rate (offered far above capacity),
then open-loop load at 2x and 4x that rate, every request tagged and its answer checked (and a
sample re-sent alone and compared); then how long after the load stops requests are fast again.
Past capacity a request should get its answer within ``max_queue_wait_s`` plus its service time, or
a fast 429 with an honest Retry-After: never a long wait, never a lost or wrong answer.
Also: requests whose clients give up (abandoned) and how little work they leave behind.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import time
from dataclasses import replace
from pathlib import Path

import httpx

from ..errors import LoadTestError
from ..loadtest.apis import make_api
from ..loadtest.client import run_load, verify
from ..loadtest.plan import LoadSpec
from ..stats import percentile, summarize
from ..workload import make_inputs

LAG_WARNING_MS = 100.0  # a load generator sending this late (p99) is a bottleneck of its own


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--url", default="http://127.0.0.1:8000")
    parser.add_argument(
        "--adapters", default="", help="comma-separated adapters to draw from (default: the base)"
    )
    parser.add_argument("--duration", type=float, default=8.0, help="seconds of load per level")
    parser.add_argument("--levels", default="2,4", help="multiples of the saturated rate")
    parser.add_argument("--new-tokens", type=int, default=16)
    parser.add_argument(
        "--concurrency", type=int, default=32, help="closed-loop clients that measure the capacity"
    )
    parser.add_argument("--abandoned", type=int, default=200, help="requests whose clients give up")
    parser.add_argument("--give-up", type=float, default=1.0, help="seconds after which those clients leave")
    parser.add_argument("--json", help="also write the figures here")


def _metric(url: str, name: str, labels: str = "") -> float:
    prefix = name + (("{" + labels + "}") if labels else "")
    total = 0.0
    for line in httpx.get(url + "/metrics", timeout=30).text.splitlines():
        if line.startswith(prefix + " ") or (not labels and line.startswith(name + "{")):
            total += float(line.split()[-1])
    return total


def capacity(spec: LoadSpec, concurrency: int, duration_s: float, max_s: float = 90.0) -> dict:
    """The saturated rate, closed-loop: ``concurrency`` clients each sending its next request as soon
    as the last is answered (a refused one waits its Retry-After, at most 1 s). Closed-loop so that
    the load generator itself is never the bottleneck. It runs for ``duration_s`` and at least until
    ``4 * concurrency`` answers (at most ``max_s``); the rate is counted from the first wave's last
    answer to the last answer, finish to finish, so that answers coming in waves (a batch of rows of
    one length ends together) are not over- or under-counted."""
    api = make_api(spec.api, spec.parameters, spec.base_id)
    answered: list[float] = []
    refused = 0
    start = time.monotonic()

    def done() -> bool:
        elapsed = time.monotonic() - start
        return elapsed >= max_s or (elapsed >= duration_s and len(answered) >= 4 * concurrency)

    async def client_loop(client: httpx.AsyncClient, k: int) -> None:
        nonlocal refused
        i = k
        while not done():
            request = api.request(
                spec.adapters[i % len(spec.adapters)], spec.inputs[i % len(spec.inputs)], False
            )
            i += concurrency
            r = await client.post(request.path, params=request.query, json=request.body)
            if r.status_code == 200:
                answered.append(time.monotonic())
            elif r.status_code in (429, 503):
                refused += 1
                await asyncio.sleep(min(1.0, float(r.headers.get("retry-after", 1))))
            else:
                raise LoadTestError(f"capacity run: {r.status_code} {r.text[:200]}")

    async def all_clients() -> None:
        limits = httpx.Limits(max_connections=concurrency + 4)
        async with httpx.AsyncClient(base_url=spec.url, timeout=spec.timeout_s, limits=limits) as client:
            await asyncio.gather(*(client_loop(client, k) for k in range(concurrency)))

    asyncio.run(all_clients())
    answered.sort()
    if len(answered) <= concurrency:
        raise LoadTestError(
            f"capacity run: only {len(answered)} answers in {max_s:g} s with {concurrency} clients: "
            "ask for shorter answers or fewer clients"
        )
    first_wave = answered[concurrency - 1]
    window = answered[-1] - first_wave
    counted = len(answered) - concurrency
    return {
        "concurrency": concurrency,
        "answered": len(answered),
        "refused": refused,
        "window_s": round(window, 3),
        "rps": round(counted / window, 3) if window > 0 else 0.0,
    }


def measure(
    spec: LoadSpec, levels: list[float], duration_s: float, verify_count: int = 10, concurrency: int = 32
) -> dict:
    """The overload figures of the server at ``spec.url`` (spec: adapters, inputs, parameters)."""

    def run(s: LoadSpec) -> dict:
        return summarize(asyncio.run(run_load(s, progress=False)), s.rate)

    unloaded = run(replace(spec, rate=2.0, duration_s=0, max_requests=12, poisson=False))
    saturated = capacity(spec, concurrency, max(2.0, min(4.0, duration_s)))
    rps = saturated["rps"] or 1.0
    result: dict = {"unloaded": unloaded, "saturated": saturated, "capacity_rps": rps, "levels": []}
    for level in levels:
        load = replace(spec, rate=level * rps, duration_s=duration_s, seed=int(level * 10))
        outcomes = asyncio.run(run_load(load, progress=False))
        summary = summarize(outcomes, load.rate)
        ok = [o for o in outcomes if o.ok]
        refused = [o for o in outcomes if o.status in (429, 503)]
        summary |= {
            "level": level,
            "refused": len(refused),
            "lost": len(outcomes) - len(ok) - len(refused),
            "refused_p99_ms": round(1000 * (percentile([o.latency for o in refused], 99) or 0.0), 1)
            if refused
            else None,
            "retry_after_s": sorted({o.retry_after for o in refused}, key=str),
            "verify_problems": asyncio.run(verify(load, outcomes, verify_count)),
        }
        result["levels"].append(summary)
    result["recovery_s"] = recovery(spec, unloaded["latency_ms"]["p50"])
    return result


def recovery(spec: LoadSpec, unloaded_p50_ms: float, window_s: float = 5.0) -> float | None:
    """Seconds from the end of the load until a request alone is as fast as unloaded (2x its p50)."""
    start = time.monotonic()
    with httpx.Client(base_url=spec.url, timeout=60) as client:
        while time.monotonic() - start < window_s:
            sent = time.monotonic()
            r = client.post("/generate", json={"inputs": spec.inputs[0], "parameters": spec.parameters})
            if r.status_code == 200 and (time.monotonic() - sent) * 1000 <= 2 * unloaded_p50_ms:
                return round(time.monotonic() - start, 3)
            time.sleep(0.05)
    return None


def abandoned(spec: LoadSpec, count: int, give_up_s: float = 0.3) -> dict:
    """``count`` long requests whose clients give up after ``give_up_s``: how much they cost after."""
    url = spec.url
    long = {"max_new_tokens": 200, "min_new_tokens": 200}
    # the device's work: rows summed over the steps it ran (one token of one row per step on the
    # continuous path), whether or not the row was later finished; a cancelled row's tokens count
    # here and never in inputtune_generated_tokens_total
    work = "inputtune_batch_rows_sum"
    before = _metric(url, work)

    answered = 0

    async def one(client: httpx.AsyncClient, i: int) -> None:
        nonlocal answered
        with contextlib.suppress(httpx.TimeoutException):  # the client gives up
            r = await client.post(
                "/generate", json={"inputs": spec.inputs[i % len(spec.inputs)], "parameters": long}
            )
            answered += r.status_code == 200

    async def all_of_them() -> None:
        limits = httpx.Limits(max_connections=count + 10)
        async with httpx.AsyncClient(base_url=url, timeout=give_up_s, limits=limits) as client:
            await asyncio.gather(*(one(client, i) for i in range(count)))

    asyncio.run(all_of_them())
    gave_up = time.monotonic()
    at_give_up = _metric(url, work)
    deadline = gave_up + 10
    while (_metric(url, "inputtune_requests_running") or _metric(url, "inputtune_requests_waiting")) and (
        time.monotonic() < deadline
    ):
        time.sleep(0.02)
    drained_s = time.monotonic() - gave_up
    after = _metric(url, work)
    sent = time.monotonic()
    with httpx.Client(base_url=url, timeout=60) as client:
        next_answer = client.post("/generate", json={"inputs": spec.inputs[0], "parameters": spec.parameters})
    return {
        "count": count,
        "give_up_s": give_up_s,
        "answered_in_time": answered,
        "tokens_while_waited": at_give_up - before,
        "tokens_after_give_up": after - at_give_up,
        "tokens_if_run": (count - answered) * 200,  # what the abandoned rows would have cost in full
        "drained_s": round(drained_s, 3),
        "cancelled": _metric(url, "inputtune_cancelled_rows_total"),
        "counted_499": _metric(url, "inputtune_requests_total", 'adapter="_base",status="499"'),
        "next_request_ms": round((time.monotonic() - sent) * 1000, 1),
        "next_request_status": next_answer.status_code,
    }


def run(args: argparse.Namespace) -> int:  # noqa: F811 (the CLI's entry point)
    adapters: list[str | None] = [a for a in args.adapters.split(",") if a] or [None]
    tokens = {"max_new_tokens": args.new_tokens, "min_new_tokens": args.new_tokens}
    spec = LoadSpec(
        args.url,
        rate=1.0,
        duration_s=1.0,
        adapters=adapters,
        inputs=make_inputs(64, 96, seed=2),
        parameters=tokens,
    )
    levels = [float(x) for x in args.levels.split(",")]
    figures = measure(spec, levels, args.duration, concurrency=args.concurrency)
    if args.abandoned:
        figures["abandoned"] = abandoned(spec, args.abandoned, args.give_up)
    print(
        f"unloaded p50 {figures['unloaded']['latency_ms']['p50']} ms, capacity {figures['capacity_rps']} req/s"
    )
    for level in figures["levels"]:
        print(
            f"{level['level']:g}x: {level['ok']} answered (p99 {level['latency_ms']['p99']} ms, waited p99 "
            f"{level['queue_ms']['p99']} ms), {level['refused']} refused (p99 {level['refused_p99_ms']} ms), "
            f"{level['lost']} lost, wrong {len(level['mismatches']) + len(level['verify_problems'])}"
        )
        lag = level["client_lag_ms"]["p99"] or 0.0
        if lag > LAG_WARNING_MS:
            print(
                f"  warning: the load generator fell behind (sent up to {lag:.0f} ms late, p99): this "
                "level measures it as much as the server; ask for longer answers (--new-tokens) so that "
                "the device, not HTTP, is the bottleneck, or load from another machine"
            )
    print(f"recovery {figures['recovery_s']} s; abandoned: {json.dumps(figures.get('abandoned'))}")
    if args.json:
        Path(args.json).write_text(json.dumps(figures, indent=1))
    return 0
