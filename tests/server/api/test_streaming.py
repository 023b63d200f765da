"""Streams over HTTP: tokens leave as the decoder makes them, a client that goes away frees its row,
errors during a stream arrive as a last event, and what the API does not do is refused clearly."""

from __future__ import annotations

import asyncio
import json
import re
import time

import httpx
import pytest

from tests.conftest import TEXTS
from tests.server.conftest import wrap_model_calls


def events(url: str, body: dict, adapter: str | None = "e2e") -> list[dict]:
    params = {"adapter": adapter} if adapter else {}
    with httpx.stream("POST", url + "/generate_stream", params=params, json=body, timeout=60) as r:
        assert r.status_code == 200, r.read()
        assert r.headers["content-type"].startswith("text/event-stream")
        return [json.loads(line[5:]) for line in r.iter_lines() if line.startswith("data:")]


def metric(text: str, name: str, **labels) -> float:
    pattern = name + ("{" + ",".join(f'{k}="{v}"' for k, v in labels.items()) + "}" if labels else "")
    for line in text.splitlines():
        if line.startswith(pattern + " "):
            return float(line.split()[-1])
    return 0.0


@pytest.mark.parametrize("scheduling", ["continuous", "static"])
def test_stream_equals_the_answer_and_ends_with_details(live, scheduling):
    with live(scheduling=scheduling) as server:
        for params in (
            {"max_new_tokens": 12, "min_new_tokens": 12},
            {"max_new_tokens": 9, "do_sample": True, "temperature": 30.0, "seed": 3},
            {"max_new_tokens": 8, "num_beams": 2},
        ):
            body = {"inputs": TEXTS[3], "parameters": {**params, "details": True}}
            got = events(server.url, body)
            answer = httpx.post(server.url + "/generate", params={"adapter": "e2e"}, json=body).json()
            assert (
                "".join(e["token"]["text"] for e in got)
                == got[-1]["generated_text"]
                == answer["generated_text"]
            )
            assert all(e["generated_text"] is None and e["details"] is None for e in got[:-1])
            assert got[-1]["details"]["generated_tokens"] == answer["details"]["generated_tokens"]
            assert got[-1]["details"]["finish_reason"] == answer["details"]["finish_reason"]
            ids = [e["token"]["id"] for e in got]
            ended_by_eos = answer["details"]["finish_reason"] == "eos_token"  # the EOS event ends it
            assert (ids[:-1] if ended_by_eos else ids) == [t["id"] for t in answer["details"]["tokens"]]
            assert [e["index"] for e in got] == list(range(1, len(got) + 1))


def test_tokens_leave_while_the_row_decodes(live, monkeypatch):
    """Continuous batching sends each token after its step: the first event arrives while later
    steps are still to run (each step is held back a little here to make the timing plain)."""
    with live() as server:

        def slow(real, *args, **kwargs):
            time.sleep(0.05)
            return real(*args, **kwargs)

        wrap_model_calls(server, monkeypatch, slow)
        body = {"inputs": TEXTS[1], "parameters": {"max_new_tokens": 16, "min_new_tokens": 16}}
        arrivals = []
        start = time.monotonic()
        with httpx.stream("POST", server.url + "/generate_stream", json=body, timeout=60) as r:
            for line in r.iter_lines():
                if line.startswith("data:"):
                    arrivals.append(time.monotonic() - start)
        assert len(arrivals) == 16
        assert arrivals[0] < arrivals[-1] - 0.4, arrivals  # 15 more steps of >= 50 ms followed the first


def test_disconnected_streams_free_their_rows(live):
    with live(max_batch_size=32) as server:
        body = {"inputs": TEXTS[1], "parameters": {"max_new_tokens": 200, "min_new_tokens": 200}}
        later = {"inputs": TEXTS[5], "parameters": {"max_new_tokens": 8}}
        before = httpx.post(server.url + "/generate", params={"adapter": "fr-en"}, json=later).json()

        async def open_and_drop(count: int) -> int:
            firsts = 0
            async with httpx.AsyncClient(base_url=server.url, timeout=60) as client:
                opened = []
                for _ in range(count):
                    cm = client.stream("POST", "/generate_stream", params={"adapter": "e2e"}, json=body)
                    response = await cm.__aenter__()
                    async for line in response.aiter_lines():
                        if line.startswith("data:"):
                            firsts += 1
                            break
                    opened.append(cm)
                for cm in opened:  # the clients go away after their first token
                    await cm.__aexit__(None, None, None)
            return firsts

        assert asyncio.run(open_and_drop(20)) == 20
        deadline = time.monotonic() + 20
        while server.engine.worker.running and time.monotonic() < deadline:
            time.sleep(0.05)
        assert server.engine.worker.running == ()  # the running batch is empty: every row was dropped
        metrics = httpx.get(server.url + "/metrics").text
        assert metric(metrics, "inputtune_cancelled_rows_total", stage="running") == 20
        assert metric(metrics, "inputtune_requests_total", adapter="e2e", status="499") == 20
        assert metric(metrics, "inputtune_generated_tokens_total") < 20 * 50  # far from 20 x 200
        after = httpx.post(server.url + "/generate", params={"adapter": "fr-en"}, json=later).json()
        assert after["generated_text"] == before["generated_text"]
        assert after["details"]["batch_rows"] == 1
        assert metric(metrics, "inputtune_requests_running") == 0


def test_an_error_during_a_stream_is_its_last_event(live, monkeypatch):
    with live() as server:
        calls = {"n": 0}

        def fail_on_third_step(real, *args, **kwargs):
            calls["n"] += 1
            if calls["n"] == 3:
                raise RuntimeError("CUDA error: simulated")
            return real(*args, **kwargs)

        wrap_model_calls(server, monkeypatch, fail_on_third_step)
        got = events(
            server.url, {"inputs": TEXTS[1], "parameters": {"max_new_tokens": 10, "min_new_tokens": 10}}
        )
        assert got[-1]["error_type"] == "generation_failed" and "simulated" in got[-1]["error"]
        assert all("token" in e for e in got[:-1]) and len(got) >= 2
        assert (
            events(server.url, {"inputs": "hi", "parameters": {"max_new_tokens": 3}})[-1]["generated_text"]
            is not None
        )


def test_errors_before_a_stream_are_plain_http_errors(live):
    with live() as server:
        r = httpx.post(server.url + "/generate_stream", params={"adapter": "nope"}, json={"inputs": "hi"})
        assert r.status_code == 404 and r.json()["error_type"] == "adapter_not_found"
        r = httpx.post(server.url + "/generate_stream", json={"inputs": ["a", "b"]})
        assert r.status_code == 422 and "inputs" in r.json()["error"]
        r = httpx.post(server.url + "/", json={"inputs": ["a", "b"], "stream": True})
        assert r.status_code == 422 and "one input" in r.json()["error"]


@pytest.mark.parametrize(
    "parameters, fragment",
    [
        ({"decoder_input_details": True}, "decoder_input_details is not supported"),
        ({"watermark": True}, "watermark is not supported"),
        ({"best_of": 2}, "best_of is not supported"),
        ({"adapter_source": "hub"}, "parameters.adapter_source"),
        ({"num_beams": 2, "stop": ["x"]}, "beam search"),
    ],
)
def test_what_the_api_does_not_do_is_refused(live, parameters, fragment):
    with live() as server:
        r = httpx.post(server.url + "/generate", json={"inputs": "hi", "parameters": parameters})
        assert r.status_code == 422 and fragment in r.json()["error"], r.text


def test_adapter_id_and_query_must_agree(live):
    with live() as server:
        by_body = httpx.post(
            server.url + "/generate",
            json={"inputs": TEXTS[1], "parameters": {"adapter_id": "e2e", "max_new_tokens": 5}},
        ).json()
        by_query = httpx.post(
            server.url + "/generate",
            params={"adapter": "e2e"},
            json={"inputs": TEXTS[1], "parameters": {"max_new_tokens": 5}},
        ).json()
        assert by_body["generated_text"] == by_query["generated_text"] and by_body["adapter"] == "e2e"
        r = httpx.post(
            server.url + "/generate",
            params={"adapter": "fr-en"},
            json={"inputs": "hi", "parameters": {"adapter_id": "e2e"}},
        )
        assert r.status_code == 422 and "different adapters" in r.json()["error"]
        compat = httpx.post(
            server.url + "/",
            json={"inputs": TEXTS[1], "parameters": {"adapter_id": "e2e", "max_new_tokens": 5}},
        )
        assert compat.json() == [
            {"generated_text": by_body["generated_text"], "adapter": "e2e", "details": None}
        ]


def test_router_metrics(live, monkeypatch):
    import threading

    with live(max_batch_size=2, max_wait_ms=0) as server:
        gate = threading.Event()

        def held(real, *args, **kwargs):
            gate.wait(20)
            return real(*args, **kwargs)

        wrap_model_calls(server, monkeypatch, held)
        threads = [
            threading.Thread(
                target=httpx.post,
                args=(server.url + "/generate",),
                kwargs={
                    "params": {"adapter": a},
                    "json": {"inputs": "hi", "parameters": {"max_new_tokens": 2}},
                    "timeout": 30,
                },
            )
            for a in ("e2e", "fr-en", "dart", "de-en")
        ]
        for t in threads:
            t.start()
            time.sleep(0.1)
        deadline = time.monotonic() + 10
        while len(server.engine.queue) < 3 and time.monotonic() < deadline:
            time.sleep(0.02)
        text = httpx.get(server.url + "/metrics").text
        gate.set()
        for t in threads:
            t.join(30)
    # the first request runs (held at the device), the other three wait
    assert metric(text, "inputtune_requests_running") == 1 and metric(text, "inputtune_requests_waiting") == 3
    info = re.search(r"inputtune_adapter_requests_info\{(.*)\} ", text).group(1)
    assert 'running_adapters="e2e"' in info and 'waiting_adapters="dart,de-en,fr-en"' in info, info
    assert 'max_adapters="4"' in info
