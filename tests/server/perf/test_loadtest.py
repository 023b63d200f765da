"""The load tester: its plan, its checks, and its statistics against a fake server with known latencies."""

from __future__ import annotations

import asyncio
from collections import Counter

import httpx
import pytest
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse

from server.perf.loadtest.client import Outcome, run_load
from server.perf.loadtest.plan import LoadSpec, Planned, make_plan, zipf_weights
from server.perf.stats import percentile, summarize

LATENCY_S = {"fast": 0.02, "slow": 0.12}


def fake_server(misbehave: str | None = None) -> FastAPI:
    app = FastAPI()
    calls = Counter()

    @app.post("/generate")
    async def generate(request: Request, adapter: str | None = None):
        calls["n"] += 1
        n = calls["n"]
        await asyncio.sleep(LATENCY_S.get(adapter or "", 0.0))
        rid = request.headers.get("x-request-id", "")
        if misbehave == "every-5th-429" and n % 5 == 0:
            return JSONResponse({"error": "full", "error_type": "overloaded"}, status_code=429)
        if misbehave == "swap-ids":
            rid = rid + "-other"
        body = {
            "generated_text": "ok",
            "adapter": "fast" if misbehave == "wrong-adapter" else adapter,
            "details": {"generated_tokens": 5, "queue_ms": 1.5, "inference_ms": 3.0, "batch_rows": 2},
        }
        return JSONResponse(body, headers={"x-request-id": rid})

    return app


def run_against(app: FastAPI, spec: LoadSpec) -> list[Outcome]:
    async def go():
        async with httpx.AsyncClient(
            transport=httpx.ASGITransport(app=app), base_url="http://fake"
        ) as client:
            return await run_load(spec, progress=False, client=client)

    return asyncio.run(go())


def test_zipf_weights_and_plan_are_deterministic():
    w = zipf_weights(4, 1.0)
    assert w == pytest.approx([12 / 25, 6 / 25, 4 / 25, 3 / 25])
    assert zipf_weights(3, 0.0) == pytest.approx([1 / 3] * 3)
    spec = LoadSpec(
        "http://x", rate=100.0, duration_s=30.0, adapters=["a", "b", "c", "d"], zipf_a=1.0, seed=3
    )
    plan = make_plan(spec)
    assert plan == make_plan(spec)
    assert 2700 < len(plan) < 3300  # Poisson: ~rate * duration
    counts = Counter(p.adapter for p in plan)
    assert counts["a"] > counts["b"] > counts["c"] > counts["d"]
    assert counts["a"] / len(plan) == pytest.approx(12 / 25, abs=0.03)
    gaps = [b.at - a.at for a, b in zip(plan, plan[1:], strict=False)]
    assert sum(gaps) / len(gaps) == pytest.approx(0.01, rel=0.1)
    fixed = make_plan(LoadSpec("http://x", rate=10.0, duration_s=0, max_requests=5, poisson=False))
    assert [round(p.at, 6) for p in fixed] == [0.0, 0.1, 0.2, 0.3, 0.4]


def test_statistics_on_known_outcomes():
    outcomes = []
    for i, latency in enumerate([0.1, 0.2, 0.3, 0.4, 1.0]):
        o = Outcome(
            Planned(i, at=i * 0.5, adapter="a", text="t", tag=str(i)),
            sent=i * 0.5 + 0.001,
            done=i * 0.5 + latency,
            status=200,
            ok=True,
            generated_tokens=10,
            queue_ms=float(i),
        )
        outcomes.append(o)
    outcomes.append(
        Outcome(Planned(5, 2.5, "a", "t", "5"), sent=2.5, done=2.6, status=429, problem="HTTP 429")
    )
    s = summarize(outcomes, offered_rate=2.0)
    assert s["requests"] == 6 and s["ok"] == 5
    assert s["errors"] == {"429": 1}
    assert s["latency_ms"]["p50"] == 300.0 and s["latency_ms"]["max"] == 1000.0
    assert s["latency_ms"]["p99"] == 1000.0
    assert s["duration_s"] == 3.0  # first scheduled 0.0 -> last answer 3.0 (outcome 4: 2.0 + 1.0)
    assert s["achieved_rate"] == pytest.approx(5 / 3.0, abs=1e-3)
    assert s["generated_tokens_per_s"] == pytest.approx(50 / 3.0, abs=0.01)
    assert s["queue_ms"]["p50"] == 2.0
    assert s["client_lag_ms"]["max"] == pytest.approx(1.0)
    assert percentile([5, 1, 3], 50) == 3 and percentile([], 50) is None


def test_against_fake_server_with_known_latencies():
    spec = LoadSpec(
        "http://fake", rate=200.0, duration_s=0, max_requests=200, adapters=["fast", "slow"], zipf_a=0.0
    )
    outcomes = run_against(fake_server(), spec)
    assert all(o.ok for o in outcomes), [o.problem for o in outcomes if not o.ok][:3]
    by_adapter = {a: [o.latency for o in outcomes if o.planned.adapter == a] for a in LATENCY_S}
    for adapter, latencies in by_adapter.items():
        assert min(latencies) >= LATENCY_S[adapter]  # latency counts from the scheduled time: never below
    assert percentile(by_adapter["slow"], 50) > percentile(
        by_adapter["fast"], 50
    )  # (medians: a busy machine adds lag)
    s = summarize(outcomes, 200.0)
    assert s["errors"] == {} and s["batch_rows_mean"] == 2.0


@pytest.mark.parametrize(
    "mode, problem", [("swap-ids", "request id"), ("wrong-adapter", "answer for adapter")]
)
def test_answers_that_are_not_ours_are_caught(mode, problem):
    spec = LoadSpec("http://fake", rate=500.0, duration_s=0, max_requests=20, adapters=["slow"])
    outcomes = run_against(fake_server(mode), spec)
    assert not any(o.ok for o in outcomes)
    assert all(problem in o.problem for o in outcomes)
    assert len(summarize(outcomes, 500.0)["mismatches"]) == 10


def test_refusals_are_counted_by_status():
    spec = LoadSpec("http://fake", rate=500.0, duration_s=0, max_requests=50, adapters=["fast"])
    s = summarize(run_against(fake_server("every-5th-429"), spec), 500.0)
    assert s["errors"] == {"429": 10} and s["ok"] == 40
