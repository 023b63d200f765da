"""Faults the disk, the device or a bug can cause: each gets a clear answer, the rest of the server is
unaffected, and no client-facing message shows the server's folders."""

from __future__ import annotations

import errno
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest
import torch

from tests.adapters.test_fileformat import crafted, prompt_header
from tests.conftest import TEXTS
from tests.docker.dockerfile import DOCKERFILES, parse_dockerfile
from tests.server.conftest import failing_once, wrap_model_calls

OK = {"inputs": "hello", "parameters": {"max_new_tokens": 3}}
BAD_HEADERS = {
    "meta-string": {"__metadata__": "a string"},
    "meta-number": {"__metadata__": 42},
    "config-object": {"__metadata__": {"inputtune.format_version": "1", "inputtune.config": {"kind": "x"}}},
    "extra-number": {
        "__metadata__": {"inputtune.format_version": "1", "inputtune.config": "{}", "inputtune.metadata": 7}
    },
    "version-list": {"__metadata__": {"inputtune.format_version": ["1"], "inputtune.config": "{}"}},
}


def post(url, body=OK, adapter=None, **kw):
    return httpx.post(
        url + "/generate", params={"adapter": adapter} if adapter else {}, json=body, timeout=30, **kw
    )


def expect(response, status, error_type, fragment=""):
    assert response.status_code == status, response.text
    body = response.json()
    assert body["error_type"] == error_type and fragment in body["error"], body
    return body


def bad_file(name: str) -> bytes:
    if name == "deep":
        deep = b"[" * 100_000 + b"]" * 100_000
        return len(deep).to_bytes(8, "little") + deep
    return crafted(prompt_header(BAD_HEADERS[name]["__metadata__"]), b"\0" * 8)


@pytest.mark.parametrize("name", [*BAD_HEADERS, "deep"])
def test_headers_of_any_shape_are_422_on_upload_and_on_disk(live, adapter_dir, name):
    (adapter_dir / f"{name}.safetensors").write_bytes(bad_file(name))
    with live(admin_api_key="admin-key-1") as server:
        upload = httpx.put(
            server.url + "/adapters/up",
            content=bad_file(name),
            headers={"Authorization": "Bearer admin-key-1"},
        )
        expect(upload, 422, "invalid_adapter_file")
        expect(post(server.url, adapter=name), 422, "invalid_adapter_file")
        expect(httpx.get(server.url + f"/adapters/{name}"), 422, "invalid_adapter_file")
        assert post(server.url, adapter="e2e").status_code == 200
        assert "e2e" in {a["name"] for a in httpx.get(server.url + "/adapters").json()}


def test_a_folder_where_an_adapter_should_be(live, adapter_dir):
    (adapter_dir / "x.safetensors").mkdir()
    with live() as server:
        body = expect(post(server.url, adapter="x"), 500, "adapter_unreadable", "adapter 'x' is a folder")
        expect(httpx.get(server.url + "/adapters/x"), 500, "adapter_unreadable", "is a folder")
        names = {a["name"] for a in httpx.get(server.url + "/adapters").json()}
        assert "e2e" in names and "x" not in names
        assert post(server.url, adapter="e2e").status_code == 200
    assert str(adapter_dir) not in body["error"]


def test_messages_never_show_the_adapter_folder(live, adapter_dir):
    with live() as server:
        missing = expect(
            post(server.url, adapter="nope"), 404, "adapter_not_found", "adapter 'nope' not found"
        )
        gone = expect(httpx.get(server.url + "/adapters/nope"), 404, "adapter_not_found")
        openai = httpx.post(server.url + "/v1/completions", json={"model": "nope", "prompt": "hi"}).json()
    for message in (missing["error"], gone["error"], openai["error"]["message"]):
        assert str(adapter_dir) not in message and "/" not in message.replace("GET /adapters", ""), message


def test_a_bug_is_a_500_on_a_connection_that_keeps_working(live, monkeypatch):
    with live() as server:
        monkeypatch.setattr(server.engine, "adapter_infos", lambda: 1 / 0)
        with httpx.Client(base_url=server.url, timeout=30) as client:
            first = client.get("/adapters")
            assert first.status_code == 500 and first.json()["error_type"] == "internal_error"
            assert "ZeroDivisionError" not in first.text  # the trace is in the log, not in the answer
            again = client.post("/generate", params={"adapter": "e2e"}, json=OK)  # the same connection
            assert again.status_code == 200
            assert client.get("/health").status_code == 200


@pytest.mark.parametrize("scheduling", ["continuous", "static"])
def test_device_out_of_memory_is_a_503_and_the_server_recovers(live, monkeypatch, scheduling):
    with live(scheduling=scheduling) as server:
        wrap_model_calls(
            server, monkeypatch, failing_once(torch.OutOfMemoryError("CUDA out of memory (simulated)"))
        )
        r = post(server.url, adapter="e2e")
        body = expect(r, 503, "out_of_memory", "ran out of memory")
        assert r.headers["retry-after"] == "1" and "simulated" not in body["error"]
        assert post(server.url, adapter="e2e").status_code == 200
        assert (
            'inputtune_batches_total{outcome="out_of_memory"} 1.0' in httpx.get(server.url + "/metrics").text
        )


def test_out_of_memory_in_a_static_batch_splits_it(live, monkeypatch):
    """A batch too big for the device runs as two halves: every row still gets its answer."""
    with live(scheduling="static") as server:
        sizes = []

        def oom_above_two_rows(real, *args, **kwargs):
            sizes.append(len(args[0]))
            if len(args[0]) > 2:
                raise torch.OutOfMemoryError("CUDA out of memory (simulated)")
            return real(*args, **kwargs)

        wrap_model_calls(server, monkeypatch, oom_above_two_rows)
        together = post(server.url, {"inputs": TEXTS[:4], "parameters": {"max_new_tokens": 4}}, adapter="e2e")
        assert together.status_code == 200, together.text
        assert sizes[:3] == [4, 2, 2]
        alone = [
            post(server.url, {"inputs": t, "parameters": {"max_new_tokens": 4}}, adapter="e2e")
            for t in TEXTS[:4]
        ]
        assert [r.json()["generated_text"] for r in alone] == [r["generated_text"] for r in together.json()]


def test_a_dead_device_thread_says_so(live, monkeypatch):
    """A bug outside any batch stops the device thread: the rows it held get 503, /ready says why."""
    with live(scheduling="continuous") as server:
        queue = server.engine.queue

        def broken(policy):
            raise RuntimeError("a bug in the batcher (simulated)")

        # the device thread waits inside the real take_batch: the next row wakes it, is admitted,
        # and the next look at the queue (take_nowait, with a row running) meets the bug
        monkeypatch.setattr(queue, "take_nowait", broken)
        monkeypatch.setattr(queue, "take_batch", broken)
        expect(post(server.url, adapter="e2e"), 503, "not_ready", "the device thread stopped")
        ready = httpx.get(server.url + "/ready")
        assert ready.status_code == 503 and "the device thread stopped" in ready.json()["error"]
        assert "simulated" in ready.json()["error"]
        expect(post(server.url, adapter="e2e"), 503, "not_ready")


def test_disk_full_during_upload_leaves_nothing_half_written(live, adapter_dir, monkeypatch):
    data = (adapter_dir / "fr-en.safetensors").read_bytes()
    with live(admin_api_key="admin-key-1") as server:
        real = os.fsync

        def full(fd):
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

        monkeypatch.setattr(os, "fsync", full)
        auth = {"Authorization": "Bearer admin-key-1"}
        body = expect(
            httpx.put(server.url + "/adapters/fresh", content=data, headers=auth), 507, "insufficient_storage"
        )
        assert "no space left" in body["error"] and str(adapter_dir) not in body["error"]
        replace = httpx.put(server.url + "/adapters/e2e", content=data, headers=auth)
        expect(replace, 507, "insufficient_storage")
        monkeypatch.setattr(os, "fsync", real)
        assert not (adapter_dir / "fresh.safetensors").exists()
        assert not [p for p in adapter_dir.iterdir() if p.name.startswith(".")]  # no temporary file left
        assert post(server.url, adapter="e2e").status_code == 200  # the old e2e, whole
        assert httpx.put(server.url + "/adapters/fresh", content=data, headers=auth).status_code == 201


# ------------------------------------------------------------------------------------ permissions


def image_user() -> tuple[int, int]:
    """The non-root user the images run as (their USER line)."""
    users = {parse_dockerfile(path).user for path in DOCKERFILES.values()}
    assert len(users) == 1, users
    uid, _, gid = users.pop().partition(":")
    return int(uid), int(gid or uid)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def as_image_user(model_dir, adapter_dir):
    """A server process running as the images' user (root drops to it; others are non-root already),
    on copies of the model and adapters it can read, in a folder it owns."""
    uid, gid = image_user()
    root = Path(tempfile_dir())
    shutil.copytree(model_dir / "base", root / "base")
    shutil.copytree(adapter_dir, root / "adapters")
    as_root = os.geteuid() == 0
    if as_root:
        for path in [root, *root.rglob("*")]:
            os.chown(path, uid, gid)
    port = free_port()
    site = next(p for p in sys.path if p.endswith("site-packages") and Path(p).is_dir())
    env = dict(
        os.environ, INPUTTUNE_ADMIN_API_KEY="admin-key-1", HOME=str(root), PYTHONPATH=f"{Path.cwd()}:{site}"
    )

    def drop() -> None:
        if as_root:
            os.setgid(gid)
            os.setuid(uid)

    command = [
        interpreter_for(drop, env),
        "-s",
        "-m",
        "server.cli",
        "serve",
        "--model",
        str(root / "base"),
        "--adapter-dir",
        str(root / "adapters"),
        "--device",
        "cpu",
        "--port",
        str(port),
        "--preload",
        "fr-en",
        "--log-level",
        "warning",
    ]
    proc = subprocess.Popen(
        command, env=env, preexec_fn=drop, stdout=subprocess.PIPE, stderr=subprocess.STDOUT
    )
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            if httpx.get(url + "/ready").status_code == 200:
                break
        except httpx.HTTPError:
            time.sleep(0.1)
    else:
        proc.kill()
        pytest.fail(f"server as uid {uid} did not start: {proc.communicate()[0].decode()[-2000:]}")
    yield url, root / "adapters", proc, (uid if as_root else os.geteuid())
    proc.send_signal(signal.SIGTERM)
    proc.wait(30)
    shutil.rmtree(root, ignore_errors=True)


def interpreter_for(drop, env) -> str:
    """A Python of this version that the images' user can run, with this environment's packages on
    PYTHONPATH (a virtual environment under /root is out of its reach: /root is 0700)."""
    version = f"python{sys.version_info.major}.{sys.version_info.minor}"
    for candidate in (sys.executable, f"/usr/bin/{version}", f"/usr/local/bin/{version}"):
        try:
            done = subprocess.run(
                [candidate, "-s", "-c", "import torch, server"],
                env=env,
                preexec_fn=drop,
                capture_output=True,
                timeout=120,
            )
        except (OSError, subprocess.SubprocessError):
            continue
        if done.returncode == 0:
            return candidate
    pytest.skip(f"no {version} here that a non-root user can run: the permission faults need one")


def tempfile_dir() -> str:
    """A folder outside pytest's own (that one is 0700: another user cannot enter it)."""
    import tempfile

    folder = tempfile.mkdtemp(prefix="inputtune-perm-")
    os.chmod(folder, 0o755)
    return folder


def test_permission_faults_as_the_images_user(as_image_user):
    url, adapters, proc, uid = as_image_user
    assert uid != 0
    if os.geteuid() == 0:
        assert uid == image_user()[0]  # the images' non-root user is the one these faults run as
    status = Path(f"/proc/{proc.pid}/status").read_text()
    assert f"Uid:\t{uid}" in status.replace(" ", "\t")
    auth = {"Authorization": "Bearer admin-key-1"}
    data = (adapters / "e2e.safetensors").read_bytes()
    assert post(url, adapter="fr-en").status_code == 200  # cached on the device (preloaded)
    # an unreadable file
    os.chmod(adapters / "dart.safetensors", 0)
    expect(post(url, adapter="dart"), 500, "adapter_unreadable", "adapter 'dart' cannot be read")
    os.chmod(adapters / "dart.safetensors", 0o644)
    assert post(url, adapter="dart").status_code == 200
    # an unreadable folder: cached and uncached adapters alike, and the listing, say so
    os.chmod(adapters, 0)
    try:
        expect(post(url, adapter="fr-en"), 500, "adapter_unreadable", "cannot be read")
        expect(post(url, adapter="overnight"), 500, "adapter_unreadable", "cannot be read")
        expect(httpx.get(url + "/adapters"), 500, "adapter_unreadable", "the adapter folder cannot be read")
        assert post(url).status_code == 200  # the plain base still answers
    finally:
        os.chmod(adapters, 0o755)
    assert post(url, adapter="fr-en").status_code == 200
    # a read-only folder: an upload fails whole
    os.chmod(adapters, 0o555)
    try:
        body = expect(
            httpx.put(url + "/adapters/new", content=data, headers=auth),
            500,
            "adapter_write_failed",
            "not writable",
        )
        assert str(adapters) not in body["error"]
    finally:
        os.chmod(adapters, 0o755)
    assert not (adapters / "new.safetensors").exists()
    assert httpx.put(url + "/adapters/new", content=data, headers=auth).status_code == 201
    assert json.loads(httpx.get(url + "/adapters/new").text)["name"] == "new"
