"""Who may use the server: API keys for the inference routes (each optionally limited to adapters),
the admin key for uploads, and no credential in a URL."""

from __future__ import annotations

import logging

import httpx
import pytest

from server.errors import SettingsError
from server.settings import ServerSettings

openai = pytest.importorskip("openai")

OK = {"inputs": "hello", "parameters": {"max_new_tokens": 3}}
FULL, LIMITED = "full-access-key-0001", "limited-key-00002"


def bearer(key: str) -> dict:
    return {"Authorization": f"Bearer {key}"}


def test_api_keys_guard_the_inference_routes(live):
    with live(api_keys=f"{FULL},{LIMITED}=e2e|_base") as server:
        url = server.url
        r = httpx.post(url + "/generate", params={"adapter": "e2e"}, json=OK)
        assert r.status_code == 401 and r.headers["www-authenticate"] == "Bearer"
        assert "needs an API key" in r.json()["error"]
        wrong = httpx.post(
            url + "/generate", params={"adapter": "e2e"}, json=OK, headers=bearer("nope-nope-nope")
        )
        assert wrong.status_code == 401 and wrong.json()["error"] == "wrong API key"
        for key in (FULL, LIMITED):
            assert (
                httpx.post(
                    url + "/generate", params={"adapter": "e2e"}, json=OK, headers=bearer(key)
                ).status_code
                == 200
            )
            assert (
                httpx.post(url + "/generate", json=OK, headers=bearer(key)).status_code == 200
            )  # the plain base
        # the limited key: only its adapters, and it sees only them
        denied = httpx.post(url + "/generate", params={"adapter": "fr-en"}, json=OK, headers=bearer(LIMITED))
        assert denied.status_code == 403 and "may not use adapter 'fr-en'" in denied.json()["error"]
        assert [a["name"] for a in httpx.get(url + "/adapters", headers=bearer(LIMITED)).json()] == ["e2e"]
        assert len(httpx.get(url + "/adapters", headers=bearer(FULL)).json()) == 6
        assert httpx.get(url + "/adapters/fr-en", headers=bearer(LIMITED)).status_code == 403
        # the OpenAI client sends its api_key as the bearer token
        client = openai.OpenAI(base_url=url + "/v1", api_key=LIMITED, max_retries=0)
        assert {m.id for m in client.models.list().data} == {"e2e", client.models.list().data[0].id}
        assert client.completions.create(model="e2e", prompt="hi", max_tokens=3, temperature=0).choices
        with pytest.raises(openai.PermissionDeniedError):
            client.completions.create(model="fr-en", prompt="hi", max_tokens=3)
        with pytest.raises(openai.AuthenticationError):
            openai.OpenAI(base_url=url + "/v1", api_key="nope-nope-nope", max_retries=0).models.list()
        # health, readiness and metrics stay open (probes and scrapers carry no key)
        assert httpx.get(url + "/ready").status_code == 200 and httpx.get(url + "/metrics").status_code == 200


def test_no_credential_in_a_url(live):
    with live() as server:
        for name in ("api_key", "key", "token", "access_token"):
            r = httpx.post(server.url + "/generate", params={"adapter": "e2e", name: "s3cret"}, json=OK)
            assert r.status_code == 400 and r.json()["error_type"] == "credentials_in_url", r.text
            assert "s3cret" not in r.text and "Authorization: Bearer" in r.json()["error"]


def test_keys_never_reach_the_log(live, adapter_dir, caplog):
    """Neither a right key, a wrong one, the admin key, nor a credential sent in a URL (refused, and
    blanked in the access log) is written to any log record."""
    secrets = [FULL, "wrong-key-9999", "admin-key-0004", "in-the-url-5555"]
    data = (adapter_dir / "e2e.safetensors").read_bytes()
    with caplog.at_level(logging.DEBUG), live(api_keys=FULL, admin_api_key="admin-key-0004") as server:
        uvicorn_access = logging.getLogger("uvicorn.access")
        uvicorn_access.setLevel(logging.INFO)
        uvicorn_access.addHandler(caplog.handler)  # uvicorn's loggers do not propagate to the root
        try:
            httpx.post(server.url + "/generate", json=OK, headers=bearer(FULL))
            httpx.post(server.url + "/generate", json=OK, headers=bearer("wrong-key-9999"))
            httpx.put(server.url + "/adapters/x", content=data, headers=bearer("admin-key-0004"))
            httpx.put(server.url + "/adapters/y", content=data, headers=bearer("wrong-key-9999"))
            url = httpx.post(
                server.url + "/generate", params={"adapter": "e2e", "api_key": "in-the-url-5555"}, json=OK
            )
            assert url.status_code == 400
        finally:
            uvicorn_access.removeHandler(caplog.handler)
    client_side = ("httpx", "httpcore")  # this test's own client logs its URLs
    logged = "\n".join(r.getMessage() for r in caplog.records if not r.name.startswith(client_side))
    assert "POST /generate?adapter=e2e&api_key=*** HTTP/1.1" in logged  # the access log has the request ...
    assert not [s for s in secrets if s in logged]  # ... and no secret


def test_admin_and_api_keys_are_separate(live, adapter_dir):
    data = (adapter_dir / "e2e.safetensors").read_bytes()
    with live(api_keys=FULL, admin_api_key="admin-key-0003") as server:
        assert httpx.put(server.url + "/adapters/x", content=data, headers=bearer(FULL)).status_code == 403
        assert (
            httpx.put(server.url + "/adapters/x", content=data, headers=bearer("admin-key-0003")).status_code
            == 201
        )
        assert (
            httpx.post(server.url + "/generate", json=OK, headers=bearer("admin-key-0003")).status_code == 401
        )


@pytest.mark.parametrize(
    "values, fragment",
    [
        ({"max_queue": 8}, "a full request could never be queued"),
        ({"request_timeout_s": 5, "max_queue_wait_s": 5}, "must exceed max_queue_wait_s"),
        ({"api_keys": "short"}, "at least 8 characters"),
        ({"api_keys": "longenough-key="}, "must name at least one adapter"),
    ],
)
def test_impossible_settings_are_refused_at_start(values, fragment):
    with pytest.raises((SettingsError, ValueError), match=fragment):
        ServerSettings(**values)
