"""``inputtune cluster serve``: a local Ray (2 CPUs) serving the tiny model on 2 replicas through Ray
Serve's HTTP proxy, and the single-process server on the same files for the expected answers. One
cluster per module: starting Ray and two replicas costs tens of seconds on 2 cores."""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import signal
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

# A local Ray started by ray.init (the command's) uses token authentication (its token in ~/.ray); a
# second driver connects only in token mode, which Ray reads once, when it is imported.
os.environ.setdefault("RAY_AUTH_MODE", "token")
import ray  # noqa: E402
from ray import serve  # noqa: E402

from adapters import load_base
from server.cluster.app import APP_NAME, ClusterOptions, build_app
from server.cluster.replica import REPLICA_HEADER
from tests.server.conftest import LiveServer, settings_for, write_adapter

ADMIN_KEY = "cluster-test-admin-key"
ADAPTER_NAMES = [f"t{i:02d}" for i in range(20)]
SETTINGS = dict(device="cpu", device_slots=4, host_slots=8, max_wait_ms=20, drain_timeout_s=10)


@pytest.fixture(scope="module")
def cluster_adapter_dir(model_dir, tmp_path_factory) -> Path:
    """20 adapters, the shared store every replica reads."""
    base = load_base(model_dir / "base", device="cpu")
    folder = tmp_path_factory.mktemp("cluster") / "adapters"
    for seed, name in enumerate(ADAPTER_NAMES, start=100):
        write_adapter(folder, name, base, "input-tuning", 2 + seed % 4, seed)
    return folder


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass
class Cluster:
    url: str
    model_dir: Path
    adapter_dir: Path
    settings: dict

    def deploy(self, replicas: int) -> None:
        """Deploy (or update) the application with ``replicas`` replicas; returns when it runs."""
        options = ClusterOptions(replicas=replicas, settings=self.settings)
        serve.run(build_app(options), name=APP_NAME, route_prefix="/")

    @property
    def ingress(self):
        return serve.get_deployment_handle("InputtuneIngress", APP_NAME)

    def set_affinity(self, on: bool) -> None:
        self.ingress.set_affinity.remote(on).result(timeout_s=30)

    def replica_states(self) -> dict:
        return serve.status().applications[APP_NAME].deployments["InputtuneReplica"].replica_states


@pytest.fixture(scope="module")
def cluster(model_dir, cluster_adapter_dir):
    """``inputtune cluster serve`` in a process of its own (it starts a local Ray with 2 CPUs), this
    process connected to that Ray as a second driver (to kill a replica, redeploy, read the status).
    Stopped with SIGTERM at the end: it must exit 0 and leave no Ray behind."""
    port = free_port()
    settings = dict(SETTINGS, model=str(model_dir / "base"), adapter_dir=str(cluster_adapter_dir))
    options = [f"--{k.replace('_', '-')}={v}" for k, v in settings.items()]
    command = [sys.executable, "-m", "server.cli", "cluster", "serve", "--replicas=2", "--host=127.0.0.1",
               f"--port={port}", *options]  # fmt: skip
    env = {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"} | {"INPUTTUNE_ADMIN_API_KEY": ADMIN_KEY}
    # its log goes to a file: a pipe nobody reads would fill up and block the command
    with tempfile.TemporaryFile("w+") as log:
        proc = subprocess.Popen(command, env=env, stdout=log, stderr=subprocess.STDOUT)

        def output() -> str:
            log.seek(0)
            return log.read()

        try:
            url = f"http://127.0.0.1:{port}"
            deadline = time.monotonic() + 180
            while "inputtune on Ray Serve at" not in output():
                assert proc.poll() is None, output()
                assert time.monotonic() < deadline, "inputtune cluster serve did not start:\n" + output()
                time.sleep(0.5)
            gcs = re.search(r"started a local Ray at (\S+)", output())
            assert gcs, output()
            ray.init(address=gcs.group(1), log_to_driver=False, configure_logging=False)
            assert httpx.get(url + "/ready").status_code == 200
            yield Cluster(url, model_dir, cluster_adapter_dir, dict(settings, admin_api_key=ADMIN_KEY))
        finally:
            ray.shutdown()  # this driver only: the command's Ray stays until the command stops it
            proc.send_signal(signal.SIGTERM)
            try:
                code = proc.wait(90)
            except subprocess.TimeoutExpired:
                proc.kill()
                code = proc.wait(10)
            text = output()
    assert code == 0, text
    host, _, gcs_port = gcs.group(1).rpartition(":")
    with socket.socket() as s, contextlib.suppress(OSError):  # its Ray stopped with it
        s.settimeout(2)
        assert s.connect_ex((host, int(gcs_port))) != 0, "the command's Ray is still running"


@pytest.fixture(scope="module")
def single(model_dir, cluster_adapter_dir):
    """The single-process server on the same base and adapter folder: the expected answers."""
    settings = settings_for(model_dir, cluster_adapter_dir, **SETTINGS, admin_api_key=ADMIN_KEY)
    with LiveServer(settings) as server:
        yield server


async def send_all(
    url: str, requests: list[tuple[str, dict]], concurrency: int = 6, done: list | None = None
) -> list[httpx.Response]:
    """POST each (path, json body) with at most ``concurrency`` in flight; the responses in order (and
    appended to ``done`` as they come)."""
    gate = asyncio.Semaphore(concurrency)
    async with httpx.AsyncClient(base_url=url, timeout=90) as client:

        async def one(path: str, body: dict) -> httpx.Response:
            async with gate:
                response = await client.post(path, json=body)
            if done is not None:
                done.append(response)
            return response

        return list(await asyncio.gather(*(one(p, b) for p, b in requests)))


def replica_of(response: httpx.Response) -> str:
    return response.headers[REPLICA_HEADER]


def wait_until(condition, timeout_s: float, what: str, every_s: float = 0.5) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(every_s)
