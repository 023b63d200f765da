"""Every error: its status code and its message, and the server keeps serving afterwards."""

from __future__ import annotations

import threading
import time

import httpx
import pytest
from safetensors.torch import save as st_save

from adapters import AdapterConfig, random_adapter, save_adapter
from tests.conftest import TEXTS
from tests.server.conftest import failing_once, wrap_model_calls

OK = {"inputs": "hello", "parameters": {"max_new_tokens": 3}}


def post(server, body, adapter=None, **kw):
    params = {"adapter": adapter} if adapter else {}
    return httpx.post(server.url + "/generate", params=params, json=body, timeout=30, **kw)


def expect(response, status, error_type, fragment):
    assert response.status_code == status, response.text
    body = response.json()
    assert body["error_type"] == error_type, body
    assert fragment in body["error"], body
    return body


def test_request_errors(live):
    with live(
        max_new_tokens=16,
        default_max_new_tokens=8,
        max_num_beams=2,
        max_input_tokens=20,
        max_inputs_per_request=3,
    ) as server:
        expect(post(server, OK, adapter="nope"), 404, "adapter_not_found", "adapter 'nope' not found")
        expect(post(server, OK, adapter="../etc/passwd"), 422, "invalid_adapter_name", "invalid adapter name")
        expect(post(server, {"inputs": ""}), 422, "invalid_request", "input 0 is empty")
        expect(post(server, {"inputs": []}), 422, "invalid_request", "empty list")
        expect(post(server, {"inputs": ["a"] * 4}), 413, "too_many_inputs", "cap of 3")
        expect(post(server, {"text": "hi"}), 422, "invalid_request", "inputs: Field required")
        expect(
            post(server, {"inputs": "hi", "parameters": {"max_new_tokens": 17}}),
            422,
            "invalid_parameters",
            "exceeds this server's cap of 16",
        )
        expect(
            post(server, {"inputs": "hi", "parameters": {"num_beams": 3}}),
            422,
            "invalid_parameters",
            "num_beams=3 exceeds",
        )
        expect(
            post(server, {"inputs": "hi", "parameters": {"temperature": -0.5}}),
            422,
            "invalid_request",
            "parameters.temperature",
        )
        expect(
            post(server, {"inputs": "hi", "parameters": {"do_sample": True, "num_beams": 2}}),
            422,
            "invalid_parameters",
            "cannot be combined",
        )
        expect(post(server, {"inputs": "hi", "parameters": {"bogus": 1}}), 422, "invalid_request", "bogus")
        # JSON types as JSON Schema has them: no "5" for 5, no 0 for false, no white space for a text
        for field, value in (("max_new_tokens", "5"), ("do_sample", 0), ("details", "true")):
            body = {"inputs": "hi", "parameters": {field: value}}
            expect(post(server, body), 422, "invalid_request", f"parameters.{field}")
        expect(post(server, {"inputs": " \t\u3000\u00a0"}), 422, "invalid_request", "input 0 is empty")
        long_text = "x" * 50  # byte-level tokenizer: 51 tokens > 20
        expect(
            post(server, {"inputs": long_text}), 413, "input_too_long", "has 51 tokens but the limit is 20"
        )
        truncated = post(server, {"inputs": long_text, "parameters": {"truncate": True, "max_new_tokens": 2}})
        assert truncated.status_code == 200 and truncated.json()["details"]["input_tokens"] == 20
        assert post(server, OK, adapter="e2e").status_code == 200


def test_bad_adapter_files_fail_alone(live, adapter_dir, model_dir):
    (adapter_dir / "garbage.safetensors").write_bytes(b"\x80\x04 this is a pickle")
    (adapter_dir / "nometa.safetensors").write_bytes(
        st_save({"prompt": random_adapter(AdapterConfig("prompt-tuning", 64, 2), seed=1).prompt})
    )
    other = AdapterConfig(
        "input-tuning", 64, 2, base_fingerprint="sha256:" + "00" * 16, base_model="other-t5"
    )
    save_adapter(random_adapter(other, seed=1), adapter_dir / "foreign.safetensors")
    wide = AdapterConfig("input-tuning", 128, 2)
    save_adapter(random_adapter(wide, seed=1), adapter_dir / "wide.safetensors")
    with live() as server:
        expect(post(server, OK, adapter="garbage"), 422, "invalid_adapter_file", "never unpickles")
        expect(post(server, OK, adapter="nometa"), 422, "invalid_adapter_file", "without inputtune metadata")
        expect(
            post(server, OK, adapter="foreign"), 422, "incompatible_adapter", "trained on another base model"
        )
        expect(
            post(server, OK, adapter="wide"),
            422,
            "incompatible_adapter",
            "trained for d_model=128 but the base model has d_model=64",
        )
        assert post(server, OK, adapter="e2e").status_code == 200
        names = {a["name"] for a in httpx.get(server.url + "/adapters").json()}
        assert "e2e" in names and "garbage" not in names  # broken files do not break the listing


@pytest.mark.parametrize("scheduling", ["static", "continuous"])
def test_queue_full_is_429_with_retry_after_and_nothing_is_lost(live, monkeypatch, scheduling):
    with live(
        max_queue=4, max_inputs_per_request=4, max_batch_size=2, max_wait_ms=0, scheduling=scheduling
    ) as server:
        gate = threading.Event()

        def blocked(real, *args, **kwargs):
            gate.wait(30)
            return real(*args, **kwargs)

        wrap_model_calls(server, monkeypatch, blocked)
        results: dict[int, httpx.Response] = {}

        def call(i):
            results[i] = post(
                server, {"inputs": TEXTS[i], "parameters": {"max_new_tokens": 3}}, adapter="e2e"
            )

        threads = [threading.Thread(target=call, args=(i,)) for i in range(8)]
        for t in threads:
            t.start()
        # the device holds one batch of 2 at the gate, the queue holds 4: at least 2 of 8 are refused
        deadline = time.monotonic() + 10
        while sum(r.status_code == 429 for r in results.values()) < 2 and time.monotonic() < deadline:
            time.sleep(0.02)
        gate.set()
        for t in threads:
            t.join(30)
        codes = sorted(r.status_code for r in results.values())
        assert codes.count(429) >= 2 and set(codes) <= {200, 429}, codes
        for i, r in results.items():
            if r.status_code == 429:
                assert r.headers["retry-after"] == "1"
                assert "queue is full" in r.json()["error"]
            else:  # every accepted request got its own answer
                alone = post(server, {"inputs": TEXTS[i], "parameters": {"max_new_tokens": 3}}, adapter="e2e")
                assert r.json()["generated_text"] == alone.json()["generated_text"]


@pytest.mark.parametrize("scheduling", ["static", "continuous"])
def test_failing_batch_fails_only_itself(live, monkeypatch, scheduling):
    with live(scheduling=scheduling) as server:
        wrap_model_calls(server, monkeypatch, failing_once(RuntimeError("CUDA error: simulated")))
        body = expect(post(server, OK, adapter="e2e"), 500, "generation_failed", "simulated")
        assert "batch" in body["error"]
        assert post(server, OK, adapter="e2e").status_code == 200
        metrics = httpx.get(server.url + "/metrics").text
        assert 'inputtune_batches_total{outcome="error"} 1.0' in metrics
        assert 'inputtune_requests_total{adapter="e2e",status="500"} 1.0' in metrics


@pytest.mark.parametrize("key_setting", [None, "s3cret"])
def test_admin_api_requires_a_configured_key(live, adapter_dir, key_setting):
    data = (adapter_dir / "e2e.safetensors").read_bytes()
    with live(admin_api_key=key_setting) as server:
        r = httpx.put(server.url + "/adapters/new", content=data)
        if key_setting is None:
            expect(r, 403, "admin_disabled", "INPUTTUNE_ADMIN_API_KEY")
        else:
            expect(r, 403, "forbidden", "Authorization: Bearer")
            wrong = httpx.put(
                server.url + "/adapters/new", content=data, headers={"Authorization": "Bearer nope"}
            )
            expect(wrong, 403, "forbidden", "wrong admin key")
        expect(
            httpx.delete(server.url + "/adapters/e2e"),
            403,
            "admin_disabled" if key_setting is None else "forbidden",
            "admin",
        )
        assert (adapter_dir / "e2e.safetensors").exists()


def test_upload_use_and_delete(live, adapter_dir):
    auth = {"Authorization": "Bearer k"}
    with live(admin_api_key="k") as server:
        data = (adapter_dir / "fr-en.safetensors").read_bytes()
        r = httpx.put(server.url + "/adapters/uploaded", content=data, headers=auth)
        assert r.status_code == 201 and r.json()["name"] == "uploaded" and r.json()["cached"] == "host"
        same = [post(server, OK, adapter=name).json()["generated_text"] for name in ("uploaded", "fr-en")]
        assert same[0] == same[1]
        bad = httpx.put(server.url + "/adapters/broken", content=data[:100], headers=auth)
        expect(bad, 422, "invalid_adapter_file", "")
        assert not (adapter_dir / "broken.safetensors").exists()
        expect(
            httpx.put(server.url + "/adapters/empty", content=b"", headers=auth),
            422,
            "invalid_adapter_file",
            "body is empty",
        )
        assert httpx.delete(server.url + "/adapters/uploaded", headers=auth).status_code == 204
        expect(post(server, OK, adapter="uploaded"), 404, "adapter_not_found", "not found")
        expect(httpx.delete(server.url + "/adapters/uploaded", headers=auth), 404, "adapter_not_found", "")
        assert post(server, OK, adapter="fr-en").status_code == 200
