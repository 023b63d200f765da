"""inputtune on Ray Serve (server/cluster/): 2 CPU replicas of the tiny model behind Ray Serve's HTTP
proxy give the single process's answers and errors, route by adapter, survive a killed replica, and
see uploads on every replica. Figures print with ``pytest -s`` (docs/cluster.md holds a run's)."""

from __future__ import annotations

import asyncio
import json
import random
import time

import httpx
import ray

from adapters import AdapterConfig, load_base, random_adapter, to_bytes
from server.cluster.ingress import ATTEMPT_HEADER
from server.cluster.replica import ON_DEVICE_HEADER
from tests.server.cluster.conftest import ADAPTER_NAMES, ADMIN_KEY, replica_of, send_all, wait_until

MAX_NEW = {"max_new_tokens": 12}


def answer_text(path: str, response: httpx.Response) -> str:
    """The generated text of any route's non-streamed answer."""
    assert response.status_code == 200, (path, response.status_code, response.text)
    data = response.json()
    if path == "/":
        return data[0]["generated_text"]
    if path == "/v1/completions":
        return data["choices"][0]["text"]
    if path == "/v1/chat/completions":
        return data["choices"][0]["message"]["content"]
    return data["generated_text"]


def mixed_requests(n: int) -> list[tuple[str, dict]]:
    """n greedy requests over the 20 adapters through the native, TGI and OpenAI routes."""
    requests = []
    for i in range(n):
        name, text = ADAPTER_NAMES[i % len(ADAPTER_NAMES)], f"request {i}: the cat sat on mat {i * 7}"
        kind = i % 10
        if kind < 4:
            requests.append((f"/generate?adapter={name}", {"inputs": text, "parameters": MAX_NEW}))
        elif kind == 4:
            requests.append(("/", {"inputs": text, "parameters": {**MAX_NEW, "adapter_id": name}}))
        elif kind < 9:
            body = {"model": name, "prompt": text, "max_tokens": 12, "temperature": 0}
            requests.append(("/v1/completions", body))
        else:
            messages = [{"role": "user", "content": text}]
            body = {"model": name, "messages": messages, "max_tokens": 12, "temperature": 0}
            requests.append(("/v1/chat/completions", body))
    return requests


def streamed_text(url: str, path: str, body: dict) -> str:
    """The concatenated token texts of a streamed answer (native/TGI or OpenAI events)."""
    text = ""
    with httpx.stream("POST", url + path, json=body, timeout=60) as response:
        assert response.status_code == 200, response.read()
        for line in response.iter_lines():
            if not line.startswith("data:") or line == "data: [DONE]":
                continue
            event = json.loads(line[len("data:") :])
            assert "error" not in event, event
            if path.startswith("/v1"):
                text += event["choices"][0]["text"] if event["choices"] else ""
            elif not event["token"]["special"]:
                text += event["token"]["text"]
    return text


async def stream_events(
    client: httpx.AsyncClient, path: str, body: dict, running: dict | None = None
) -> tuple[str, dict | None]:
    """A native stream's text and its error event (None when it ended normally); while it runs,
    ``running[path]`` is the replica serving it."""
    text = ""
    async with client.stream("POST", path, json=body) as response:
        assert response.status_code == 200, await response.aread()
        if running is not None:
            running[path] = replica_of(response)
        async for line in response.aiter_lines():
            if line.startswith("data:"):
                event = json.loads(line[len("data:") :])
                if "error" in event:
                    return text, event
                text += "" if event["token"]["special"] else event["token"]["text"]
    return text, None


def test_100_requests_over_20_adapters_equal_the_single_process(cluster, single):
    requests = mixed_requests(100)
    started = time.perf_counter()
    got = asyncio.run(send_all(cluster.url, requests))
    elapsed = time.perf_counter() - started
    expected = asyncio.run(send_all(single.url, requests))
    mismatches = [
        (path, body, answer_text(path, g), answer_text(path, e))
        for (path, body), g, e in zip(requests, got, expected, strict=True)
        if answer_text(path, g) != answer_text(path, e)
    ]
    assert not mismatches, mismatches[:5]
    replicas = {replica_of(r) for r in got}
    assert len(replicas) == 2, replicas  # both replicas served
    print(
        f"\ncluster: 100 requests over 20 adapters in {elapsed:.2f} s on {len(replicas)} replicas, all equal"
    )


def test_streams_through_the_proxy_equal_the_non_streamed_answers(cluster, single):
    for name in ADAPTER_NAMES[:3]:
        text = f"a streamed request for {name}"
        native = {"inputs": text, "parameters": MAX_NEW}
        expected = answer_text("/generate", httpx.post(f"{single.url}/generate?adapter={name}", json=native))
        assert streamed_text(cluster.url, f"/generate_stream?adapter={name}", native) == expected
        openai = {"model": name, "prompt": text, "max_tokens": 12, "temperature": 0, "stream": True}
        assert streamed_text(cluster.url, "/v1/completions", openai) == expected


def test_errors_are_the_single_process_errors(cluster, single):
    cases = [
        ("/generate?adapter=missing", {"inputs": "x"}),
        ("/", {"inputs": "x", "parameters": {"adapter_id": "missing"}}),
        ("/v1/completions", {"model": "missing", "prompt": "x"}),
        ("/generate?adapter=t00", {"inputs": ""}),
        ("/generate?adapter=t00", {"inputs": "x", "parameters": {"watermark": True}}),
        ("/generate?adapter=../etc", {"inputs": "x"}),
    ]
    for path, body in cases:
        got, expected = httpx.post(cluster.url + path, json=body), httpx.post(single.url + path, json=body)
        assert (got.status_code, got.json()) == (expected.status_code, expected.json()), path
    missing = httpx.post(cluster.url + "/generate?adapter=missing", json={"inputs": "x"})
    assert missing.status_code == 404 and missing.json()["error_type"] == "adapter_not_found"
    assert httpx.post(cluster.url + "/generate", content=b"{not json").status_code == 422
    for url in (cluster.url, single.url):  # an upload without the admin key changes nothing
        assert httpx.put(url + "/adapters/t00", content=b"x").status_code == 403
    request_id = httpx.get(cluster.url + "/health", headers={"X-Request-Id": "abc123"}).headers[
        "x-request-id"
    ]
    assert request_id == "abc123"


def zipf_names(n: int, seed: int, s: float = 1.1) -> list[str]:
    weights = [1 / (rank**s) for rank in range(1, len(ADAPTER_NAMES) + 1)]
    return random.Random(seed).choices(ADAPTER_NAMES, weights, k=n)


def device_hit_share(url: str, names: list[str], warmup: int) -> tuple[float, dict[str, int]]:
    """Share of requests (after the first ``warmup``) whose adapter was on their replica's device tier
    when they arrived, and how many each replica served."""
    requests = [
        (f"/generate?adapter={name}", {"inputs": f"zipf {i}", "parameters": {"max_new_tokens": 4}})
        for i, name in enumerate(names)
    ]
    responses = asyncio.run(send_all(url, requests, concurrency=4))
    measured = responses[warmup:]
    for r in measured:
        assert r.status_code == 200, r.text
    per_replica: dict[str, int] = {}
    for r in measured:
        per_replica[replica_of(r)] = per_replica.get(replica_of(r), 0) + 1
    hits = sum(r.headers[ON_DEVICE_HEADER] == "1" for r in measured)
    return hits / len(measured), per_replica


def test_affinity_finds_adapters_on_the_device_more_often_than_no_affinity(cluster):
    """2 replicas x 4 device slots, 20 adapters with Zipf popularity: each mode gets the same kind of
    load, the first 40 requests warm the caches to that mode's steady state, then 200 are counted."""
    try:
        cluster.set_affinity(False)
        off, off_split = device_hit_share(cluster.url, zipf_names(240, seed=1), warmup=40)
        cluster.set_affinity(True)
        on, on_split = device_hit_share(cluster.url, zipf_names(240, seed=2), warmup=40)
    finally:
        cluster.set_affinity(True)
    print(f"\ndevice-tier hit share: affinity {on:.1%} {on_split}, no affinity {off:.1%} {off_split}")
    assert on > off, (on, off)


def test_an_upload_through_the_cluster_is_served_by_every_replica(cluster, single):
    base = load_base(cluster.model_dir / "base", device="cpu")
    config = AdapterConfig(
        "input-tuning", base.d_model, 3, base_model=base.name, base_fingerprint=base.fingerprint
    )
    auth = {"Authorization": f"Bearer {ADMIN_KEY}"}
    body = {"inputs": "the new adapter's input", "parameters": MAX_NEW}
    answers = []
    try:
        cluster.set_affinity(False)  # spread the requests over both replicas
        for seed in (7, 8):
            data = to_bytes(random_adapter(config, seed=seed, scale=2.0))
            put = httpx.put(cluster.url + "/adapters/fresh", content=data, headers=auth, timeout=30)
            assert put.status_code in (200, 201), put.text
            expected = answer_text("/generate", httpx.post(single.url + "/generate?adapter=fresh", json=body))
            # Bursts of concurrent requests: Ray's power-of-two router sends each to the replica with the
            # shorter queue, so a burst reaches both (one request at a time may all land on one replica).
            seen: set[str] = set()
            for _ in range(6):
                burst = [("/generate?adapter=fresh", body)] * 8
                for r in asyncio.run(send_all(cluster.url, burst, concurrency=8)):
                    assert answer_text("/generate", r) == expected
                    seen.add(replica_of(r))
                if len(seen) == 2:
                    break
            assert len(seen) == 2, f"6 bursts of 8 concurrent requests never reached both replicas: {seen}"
            answers.append(expected)
        assert answers[0] != answers[1], "the two versions should answer differently"
        gone = httpx.delete(cluster.url + "/adapters/fresh", headers=auth)
        assert gone.status_code == 204, gone.text
        for _ in range(4):
            assert httpx.post(cluster.url + "/generate?adapter=fresh", json=body).status_code == 404
    finally:
        cluster.set_affinity(True)


def test_a_replica_killed_under_load_loses_no_request_and_is_replaced(cluster, single):
    """48 requests and 6 long streams in flight, one replica's actor killed: each answer is the right
    one or a clear 503 with Retry-After, a stream cut midway ends with an error event, none hangs; Ray
    Serve starts a new replica and it serves."""
    params = {"max_new_tokens": 64, "min_new_tokens": 64}
    requests = [
        (f"/generate?adapter={ADAPTER_NAMES[i % 6]}", {"inputs": f"in flight {i}", "parameters": params})
        for i in range(48)
    ]
    expected = asyncio.run(send_all(single.url, requests))
    before = {replica_of(r) for r in asyncio.run(send_all(cluster.url, mixed_requests(20)))}
    assert len(before) == 2
    victim = ""

    long = {"max_new_tokens": 250, "min_new_tokens": 250}
    streams = [
        (f"/generate_stream?adapter={name}", {"inputs": f"streamed {name}", "parameters": long})
        for name in ADAPTER_NAMES[:6]
    ]
    expected_streams = [
        answer_text("/generate", r)
        for r in asyncio.run(send_all(single.url, [(p.replace("_stream", ""), b) for p, b in streams]))
    ]

    async def load_and_kill() -> tuple[list[httpx.Response], list[tuple[str, dict | None]]]:
        """The load and long streams; once 8 answers came back, the replica serving the first stream
        is killed (so at least that stream is in flight on it)."""
        nonlocal victim
        running: dict[str, str] = {}
        async with httpx.AsyncClient(base_url=cluster.url, timeout=90) as client:
            streamed = asyncio.gather(*(stream_events(client, p, b, running) for p, b in streams))
            load = asyncio.create_task(send_all(cluster.url, requests, concurrency=12, done=done))
            while (len(done) < 8 or streams[0][0] not in running) and not load.done():
                await asyncio.sleep(0.01)
            victim = running[streams[0][0]]
            await asyncio.to_thread(ray.kill, ray.get_actor(victim, namespace="serve"))
            return await asyncio.wait_for(load, 120), await asyncio.wait_for(streamed, 120)

    done: list[httpx.Response] = []
    started = time.perf_counter()
    got, got_streams = asyncio.run(load_and_kill())
    elapsed = time.perf_counter() - started
    cut = 0
    for (text, error), whole in zip(got_streams, expected_streams, strict=True):
        if error is None:
            assert text == whole
        else:  # the stream's replica died: what came is a prefix of the answer, then a clear error
            assert error["error_type"] == "unavailable" and whole.startswith(text), (error, text, whole)
            cut += 1
    answered, resent, unavailable = 0, 0, 0
    for (path, _), g, e in zip(requests, got, expected, strict=True):
        if g.status_code == 503:
            assert g.headers.get("retry-after") and g.json()["error_type"], g.text
            unavailable += 1
        else:
            assert answer_text(path, g) == answer_text(path, e)
            answered += 1
            resent += ATTEMPT_HEADER in g.headers
    print(
        f"\nreplica killed under load: {answered} answered correctly ({resent} of them resent to the other "
        f"replica), {unavailable} got 503, in {elapsed:.1f} s; {cut} of {len(streams)} long streams ended "
        "with an error event"
    )
    assert resent + unavailable + cut > 0, "the kill should have caught requests in flight"
    started = time.perf_counter()
    seen: set[str] = set()
    cluster.set_affinity(False)
    try:

        def a_new_replica_serves() -> bool:
            response = httpx.post(cluster.url + requests[0][0], json=requests[0][1], timeout=30)
            assert response.status_code in (200, 503), response.text
            if response.status_code == 200:
                seen.add(replica_of(response))
            return bool(seen - before)

        wait_until(a_new_replica_serves, 120, "a replacement replica")
    finally:
        cluster.set_affinity(True)
    assert victim not in seen, seen
    wait_until(lambda: cluster.replica_states().get("RUNNING", 0) == 2, 30, "2 running replicas")
    print(f"replacement replica serving {time.perf_counter() - started:.1f} s after the load ended")


def test_downscaling_drains_the_replica_it_removes(cluster, single):
    """2 -> 1 replica (Ray Serve's graceful shutdown, then the engine's drain) with 24 requests in
    flight: every one is answered, and answered right. Last in the module: it leaves one replica."""
    params = {"max_new_tokens": 64, "min_new_tokens": 64}
    requests = [
        (f"/generate?adapter={ADAPTER_NAMES[i % 8]}", {"inputs": f"draining {i}", "parameters": params})
        for i in range(24)
    ]
    expected = asyncio.run(send_all(single.url, requests))

    async def load_and_downscale() -> list[httpx.Response]:
        load = asyncio.create_task(send_all(cluster.url, requests, concurrency=12, done=done))
        while len(done) < 4 and not load.done():
            await asyncio.sleep(0.01)
        await asyncio.to_thread(cluster.deploy, 1)
        return await asyncio.wait_for(load, 120)

    done: list[httpx.Response] = []
    started = time.perf_counter()
    got = asyncio.run(load_and_downscale())
    for (path, _), g, e in zip(requests, got, expected, strict=True):
        assert answer_text(path, g) == answer_text(path, e)
    wait_until(lambda: cluster.replica_states() == {"RUNNING": 1}, 60, "one replica left")
    print(f"\ndownscaled 2 -> 1 under load in {time.perf_counter() - started:.1f} s: 24 of 24 answered right")
