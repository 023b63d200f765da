"""A local Ray (2 CPUs) serving the tiny model on 2 replicas through Ray Serve's HTTP proxy, and the
single-process server on the same files for the expected answers. One cluster per module: starting
Ray and two replicas costs tens of seconds on 2 cores."""

from __future__ import annotations

import asyncio
import socket
import time
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
import ray
from ray import serve

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
    ray.init(
        address="local",
        num_cpus=2,
        include_dashboard=False,
        object_store_memory=256 * 1024**2,
        log_to_driver=False,
        configure_logging=False,
    )
    try:
        port = free_port()
        serve.start(http_options={"host": "127.0.0.1", "port": port})
        settings = dict(
            SETTINGS,
            model=str(model_dir / "base"),
            adapter_dir=str(cluster_adapter_dir),
            admin_api_key=ADMIN_KEY,
        )
        cluster = Cluster(f"http://127.0.0.1:{port}", model_dir, cluster_adapter_dir, settings)
        cluster.deploy(2)
        yield cluster
    finally:
        serve.shutdown()
        ray.shutdown()


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
