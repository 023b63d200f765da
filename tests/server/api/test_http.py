"""Over real HTTP: mixed-adapter batching gives every request exactly what it gets alone."""

from __future__ import annotations

import asyncio
import re
import time

import httpx
import pytest

from tests.conftest import TEXTS
from tests.server.conftest import wrap_model_calls

NAMES = ["e2e", "fr-en", "dart", "prompt-only", "overnight", None]


def requests_plan(n: int = 48) -> list[tuple[str | None, str, dict]]:
    plan = []
    for i in range(n):
        params = {"max_new_tokens": 4 + i % 5}
        if i % 7 == 3:
            params = {"max_new_tokens": 6, "do_sample": True, "temperature": 30.0, "seed": i}
        if i % 11 == 5:
            params = {"max_new_tokens": 5, "num_beams": 2}
        plan.append((NAMES[i % len(NAMES)], TEXTS[i % len(TEXTS)], params))
    return plan


async def send_all(url: str, plan, concurrently: bool) -> list[dict]:
    async with httpx.AsyncClient(base_url=url, timeout=60) as client:

        async def one(adapter, text, params):
            query = {"adapter": adapter} if adapter else {}
            r = await client.post("/generate", params=query, json={"inputs": text, "parameters": params})
            assert r.status_code == 200, r.text
            return r.json()

        if concurrently:
            return await asyncio.gather(*(one(*p) for p in plan))
        return [await one(*p) for p in plan]


def histogram(metrics_text: str, name: str) -> dict[str, float]:
    return {
        m.group(1): float(m.group(2))
        for m in re.finditer(rf'^{name}_bucket{{le="([^"]+)"}} (\S+)$', metrics_text, re.M)
    }


def hold_first_call_until_queued(server, monkeypatch, rows: int) -> None:
    """Make batching deterministic: the first model call waits until ``rows`` rows are queued."""
    engine = server.engine
    state = {"first": True}

    def gated(real, *args, **kwargs):
        if state["first"]:
            state["first"] = False
            deadline = time.monotonic() + 30
            while len(engine.queue) < rows and time.monotonic() < deadline:
                time.sleep(0.005)
        return real(*args, **kwargs)

    wrap_model_calls(server, monkeypatch, gated)


@pytest.mark.parametrize("scheduling", ["static", "continuous"])
def test_concurrent_mixed_requests_equal_one_at_a_time(live, monkeypatch, scheduling):
    plan = requests_plan()
    with live(max_batch_size=16, max_wait_ms=0, scheduling=scheduling) as server:
        hold_first_call_until_queued(server, monkeypatch, rows=len(plan) - 1)
        together = asyncio.run(send_all(server.url, plan, concurrently=True))
        metrics = httpx.get(server.url + "/metrics").text
        alone = asyncio.run(send_all(server.url, plan, concurrently=False))
    assert [r["generated_text"] for r in together] == [r["generated_text"] for r in alone]
    assert [r["details"]["generated_tokens"] for r in together] == [
        r["details"]["generated_tokens"] for r in alone
    ]
    assert [r["adapter"] for r in together] == [p[0] for p in plan]
    # batches really mixed adapters: after the first, batches of 16 rows spread over the 6 adapters
    # (how many share one admission depends on arrival order, so the bound is loose)
    buckets = histogram(metrics, "inputtune_batch_adapters")
    assert buckets["+Inf"] > buckets["1.0"], buckets
    assert max(r["details"]["batch_adapters"] for r in together) >= 3
    assert max(r["details"]["batch_rows"] for r in together) == 16
    assert all(r["details"]["batch_rows"] == 1 for r in alone)


def test_chunked_prefill_joins_a_burst_over_several_steps(live, monkeypatch):
    """With ``max_prefill_tokens`` below one input, rows join a running batch one per step (the policy
    for an idle device keeps ``max_batch_tokens``: tests/server/engine/test_queue.py), and every answer
    is what it is alone."""
    plan = [p for p in requests_plan(24) if p[2].get("num_beams", 1) == 1]
    joins: list[tuple[int, int]] = []  # (rows running, rows joining) per admission

    with live(max_batch_size=16, max_wait_ms=0, max_prefill_tokens=1) as server:
        hold_first_call_until_queued(server, monkeypatch, rows=len(plan) - 1)
        from adapters.decoding.continuous import ContinuousBatch

        real_admit = ContinuousBatch.admit
        monkeypatch.setattr(
            ContinuousBatch,
            "admit",
            lambda self, keys, *a, **k: [
                joins.append((len(self), len(keys))),
                real_admit(self, keys, *a, **k),
            ][1],
        )
        together = asyncio.run(send_all(server.url, plan, concurrently=True))
        alone = asyncio.run(send_all(server.url, plan, concurrently=False))
    assert [r["generated_text"] for r in together] == [r["generated_text"] for r in alone]
    into_running = [n for running, n in joins if running > 0]
    assert len(into_running) >= len(plan) // 2 and max(into_running) == 1, joins  # one row per step


def test_list_input_gives_list_output(live):
    with live() as server:
        r = httpx.post(
            server.url + "/generate",
            params={"adapter": "e2e"},
            json={"inputs": TEXTS[:3], "parameters": {"max_new_tokens": 4}},
        )
        single = [
            httpx.post(
                server.url + "/generate",
                params={"adapter": "e2e"},
                json={"inputs": t, "parameters": {"max_new_tokens": 4}},
            ).json()
            for t in TEXTS[:3]
        ]
    assert r.status_code == 200
    body = r.json()
    assert isinstance(body, list) and len(body) == 3
    assert [b["generated_text"] for b in body] == [s["generated_text"] for s in single]
    assert body[0]["details"]["finish_reason"] in ("eos_token", "length", "stop_sequence")


def test_adapter_listing_and_tiers(live):
    with live(preload=["e2e"], pin=["fr-en"]) as server:
        listing = {a["name"]: a for a in httpx.get(server.url + "/adapters").json()}
        assert set(listing) == {"e2e", "fr-en", "dart", "prompt-only", "overnight", "de-en"}
        assert listing["e2e"]["cached"] == "device" and listing["fr-en"]["pinned"]
        assert listing["dart"]["cached"] == "disk"
        assert (
            listing["prompt-only"]["kind"] == "prompt-tuning" and listing["prompt-only"]["prompt_length"] == 4
        )
        one = httpx.get(server.url + "/adapters/overnight").json()
        assert one["prompt_length"] == 7 and one["compatible"]
        assert httpx.get(server.url + "/adapters/nope").status_code == 404


def test_openapi_and_docs(live):
    with live() as server:
        spec = httpx.get(server.url + "/openapi.json").json()
        assert "/generate" in spec["paths"] and "/adapters/{name}" in spec["paths"]
        assert httpx.get(server.url + "/docs").status_code == 200
        assert httpx.get(server.url + "/health").json() == {"status": "ok"}


def test_request_id_is_echoed_or_assigned(live):
    with live() as server:
        r = httpx.post(server.url + "/generate", headers={"X-Request-Id": "tag-42"}, json={"inputs": "hi"})
        assert r.headers["x-request-id"] == "tag-42"
        assert len(httpx.get(server.url + "/health").headers["x-request-id"]) == 32


def test_naive_baseline_answers_like_the_server(model_dir, adapter_dir, live):
    """The baseline serves the same answers (greedy), so the load-test comparison is like for like."""
    from fastapi.testclient import TestClient

    from server.perf.naive import create_naive_app

    body = {"inputs": TEXTS[1], "parameters": {"max_new_tokens": 6, "min_new_tokens": 6}}
    with TestClient(create_naive_app(str(model_dir / "base"), adapter_dir, device="cpu")) as naive:
        baseline = naive.post("/generate", params={"adapter": "e2e"}, json=body).json()
    with live() as server:
        ours = httpx.post(server.url + "/generate", params={"adapter": "e2e"}, json=body).json()
    assert baseline["generated_text"] == ours["generated_text"]
    assert baseline["details"]["generated_tokens"] == ours["details"]["generated_tokens"] == 6


def test_gpt2_server_answers_like_the_naive_baseline(tmp_path):
    """GPT-2 serves through the static path whatever the scheduling setting; both settings and the
    baseline give the same tokens for greedy, penalised and seeded-sampled rows."""
    from fastapi.testclient import TestClient

    from adapters import load_base
    from adapters.testing import save_base
    from server.perf.naive import create_naive_app
    from tests.conftest import make_model
    from tests.server.conftest import ADAPTERS, LiveServer, settings_for, write_adapter

    save_base(make_model("gpt2").base, tmp_path / "base")
    base = load_base(tmp_path / "base", device="cpu")
    for seed, (name, (kind, plen)) in enumerate(ADAPTERS.items(), start=1):
        write_adapter(tmp_path / "adapters", name, base, kind, plen, seed)
    bodies = [
        {"inputs": TEXTS[1], "parameters": {"max_new_tokens": 6}},
        {"inputs": TEXTS[3], "parameters": {"max_new_tokens": 8, "repetition_penalty": 1.6}},
        {
            "inputs": TEXTS[5],
            "parameters": {"max_new_tokens": 6, "do_sample": True, "temperature": 30.0, "seed": 3},
        },
    ]
    with TestClient(create_naive_app(str(tmp_path / "base"), tmp_path / "adapters", device="cpu")) as naive:
        baseline = [naive.post("/generate", params={"adapter": "e2e"}, json=b).json() for b in bodies]
    answers = {}
    for scheduling in ("continuous", "static"):
        with LiveServer(settings_for(tmp_path, tmp_path / "adapters", scheduling=scheduling)) as server:
            answers[scheduling] = [
                httpx.post(server.url + "/generate", params={"adapter": "e2e"}, json=b).json() for b in bodies
            ]
    for got in answers.values():
        assert [a["generated_text"] for a in got] == [b["generated_text"] for b in baseline]
        assert [a["details"]["generated_tokens"] for a in got] == [
            b["details"]["generated_tokens"] for b in baseline
        ]
    assert len({b["generated_text"] for b in baseline}) == 3
