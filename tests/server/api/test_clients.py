"""The clients users already have, unchanged, against a live server: ``openai``, Hugging Face's
``InferenceClient`` and ``lorax-client``, on the tiny test model and on the embedded demo.

Every answer equals the native ``/generate`` answer for the same adapter, input and greedy settings,
and a streamed text equals the non-streamed one.
"""

from __future__ import annotations

import json

import httpx
import pytest

from server.demo import DEMO_DIR
from server.settings import ServerSettings
from tests.conftest import TEXTS
from tests.server.conftest import LiveServer, settings_for

openai = pytest.importorskip("openai")
hub = pytest.importorskip("huggingface_hub")

CASES = {  # name -> (adapter, input)
    "tiny": ("e2e", TEXTS[1]),
    "demo": ("fr-en", "Un homme en chemise bleue joue de la guitare dans la rue."),
}


@pytest.fixture(scope="module", params=list(CASES))
def served(request, model_dir, tmp_path_factory):
    """(server, adapter, input) for the tiny model and the embedded demo."""
    if request.param == "demo":
        if not (DEMO_DIR / "base" / "config.json").is_file():
            pytest.skip(f"the demo is not in this checkout ({DEMO_DIR})")
        settings = ServerSettings(device="cpu", port=0, max_wait_ms=5, drain_timeout_s=10)
    else:
        from adapters import load_base
        from tests.server.conftest import ADAPTERS, write_adapter

        folder = tmp_path_factory.mktemp("clients")
        base = load_base(model_dir / "base", device="cpu")
        for seed, (name, (kind, plen)) in enumerate(ADAPTERS.items(), start=1):
            write_adapter(folder, name, base, kind, plen, seed)
        settings = settings_for(model_dir, folder, max_wait_ms=5)
    with LiveServer(settings) as server:
        yield (server, *CASES[request.param])


def native(server, adapter, text, max_new_tokens, **parameters):
    r = httpx.post(
        server.url + "/generate",
        params={"adapter": adapter} if adapter else {},
        json={"inputs": text, "parameters": {"max_new_tokens": max_new_tokens, **parameters}},
        timeout=60,
    )
    assert r.status_code == 200, r.text
    return r.json()


def test_openai_completions_equal_native(served):
    server, adapter, text = served
    client = openai.OpenAI(base_url=server.url + "/v1", api_key="unused", max_retries=0)
    expected = native(server, adapter, text, 16)
    done = client.completions.create(model=adapter, prompt=text, max_tokens=16, temperature=0)
    assert done.choices[0].text == expected["generated_text"]
    assert done.usage.completion_tokens == expected["details"]["generated_tokens"]
    assert done.usage.prompt_tokens == expected["details"]["input_tokens"]
    assert done.choices[0].finish_reason == (
        "length" if expected["details"]["finish_reason"] == "length" else "stop"
    )
    chunks = list(
        client.completions.create(
            model=adapter,
            prompt=text,
            max_tokens=16,
            temperature=0,
            stream=True,
            extra_body={"min_tokens": 16},
        )
    )
    forced = native(server, adapter, text, 16, min_new_tokens=16)
    assert "".join(c.choices[0].text for c in chunks) == forced["generated_text"]
    assert [c.choices[0].finish_reason for c in chunks][-1] == "length"
    assert sum(c.choices[0].finish_reason is None for c in chunks) >= 2  # tokens came before the end
    # a list of prompts: one choice each, in order
    both = client.completions.create(model=adapter, prompt=[text, TEXTS[3]], max_tokens=8, temperature=0)
    assert [c.index for c in both.choices] == [0, 1]
    assert both.choices[1].text == native(server, adapter, TEXTS[3], 8)["generated_text"]


def test_openai_chat_models_and_errors(served):
    server, adapter, text = served
    client = openai.OpenAI(base_url=server.url + "/v1", api_key="unused", max_retries=0)
    expected = native(server, adapter, text, 12)["generated_text"]
    chat = client.chat.completions.create(
        model=adapter, messages=[{"role": "user", "content": text}], max_tokens=12, temperature=0
    )
    assert chat.choices[0].message.content == expected and chat.choices[0].message.role == "assistant"
    streamed = client.chat.completions.create(
        model=adapter, messages=[{"role": "user", "content": text}], max_tokens=12, temperature=0, stream=True
    )
    assert "".join(c.choices[0].delta.content or "" for c in streamed) == expected
    models = {m.id: m for m in client.models.list().data}
    base_id = next(m for m in models.values() if getattr(m, "parent", None) is None).id
    assert adapter in models and models[adapter].parent == base_id
    assert client.models.retrieve(adapter).id == adapter
    plain = client.completions.create(model=base_id, prompt=text, max_tokens=6, temperature=0)
    assert plain.choices[0].text == native(server, None, text, 6)["generated_text"]
    with pytest.raises(openai.NotFoundError, match="not found"):
        client.completions.create(model="no-such-adapter", prompt=text, max_tokens=4)
    with pytest.raises(openai.BadRequestError, match="system"):
        client.chat.completions.create(
            model=adapter,
            messages=[{"role": "system", "content": "be brief"}, {"role": "user", "content": text}],
            max_tokens=4,
        )
    with pytest.raises(openai.UnprocessableEntityError, match="n > 1"):
        client.completions.create(model=adapter, prompt=text, max_tokens=4, temperature=0, n=2)


def test_openai_logprobs_and_stop(served):
    server, adapter, text = served
    client = openai.OpenAI(base_url=server.url + "/v1", api_key="unused", max_retries=0)
    done = client.completions.create(model=adapter, prompt=text, max_tokens=10, temperature=0, logprobs=2)
    lp = done.choices[0].logprobs
    assert (
        "".join(lp.tokens) == done.choices[0].text and len(lp.token_logprobs) == done.usage.completion_tokens
    )
    assert all(v <= 0 for v in lp.token_logprobs) and all(len(top) <= 2 for top in lp.top_logprobs)
    full = done.choices[0].text
    if len(full) >= 4:
        stop = full[2:4]
        cut = client.completions.create(model=adapter, prompt=text, max_tokens=10, temperature=0, stop=[stop])
        assert cut.choices[0].text == full[: full.index(stop)] and cut.choices[0].finish_reason == "stop"
        chunks = client.completions.create(
            model=adapter, prompt=text, max_tokens=10, temperature=0, stop=stop, stream=True
        )
        assert "".join(c.choices[0].text for c in chunks) == cut.choices[0].text


def test_inference_client_text_generation(served):
    server, adapter, text = served
    client = hub.InferenceClient(base_url=server.url)
    expected = native(server, adapter, text, 16, min_new_tokens=16)
    out = client.text_generation(text, adapter_id=adapter, max_new_tokens=16, details=True)
    assert out.generated_text == native(server, adapter, text, 16)["generated_text"]
    assert out.details.finish_reason in ("length", "eos_token")
    events = list(
        client.text_generation(
            text,
            adapter_id=adapter,
            max_new_tokens=16,
            details=True,
            stream=True,
            decoder_input_details=False,
        )
    )
    # min_new_tokens is not a TGI parameter: ask the same 16 tokens through the native stream instead
    forced = list(
        sse(
            server,
            {
                "inputs": text,
                "parameters": {
                    "max_new_tokens": 16,
                    "min_new_tokens": 16,
                    "details": True,
                    "adapter_id": adapter,
                },
            },
        )
    )
    assert (
        "".join(e["token"]["text"] for e in forced)
        == forced[-1]["generated_text"]
        == expected["generated_text"]
    )
    assert sum(e["generated_text"] is None for e in forced) >= 2
    assert "".join(e.token.text for e in events) == events[-1].generated_text == out.generated_text
    assert events[-1].details.generated_tokens == out.details.generated_tokens
    plain = list(client.text_generation(text, adapter_id=adapter, max_new_tokens=16, stream=True))
    assert "".join(plain) == out.generated_text


def sse(server, body, path="/generate_stream"):
    with httpx.stream("POST", server.url + path, json=body, timeout=60) as r:
        assert r.status_code == 200, r.read()
        for line in r.iter_lines():
            if line.startswith("data:"):
                yield json.loads(line[5:])


def test_lorax_client(served):
    lorax = pytest.importorskip("lorax", reason="lorax-client is installed by .ci/run with --no-deps")
    server, adapter, text = served
    client = lorax.Client(server.url)
    expected = native(server, adapter, text, 12)["generated_text"]
    out = client.generate(text, adapter_id=adapter, max_new_tokens=12, details=True)
    assert out.generated_text == expected and out.details.generated_tokens == len(out.details.tokens)
    streamed = list(client.generate_stream(text, adapter_id=adapter, max_new_tokens=12))
    assert "".join(r.token.text for r in streamed) == streamed[-1].generated_text == expected
