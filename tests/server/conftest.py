"""Server fixtures: a tiny base saved to disk with adapters, and a live uvicorn server on a free port."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import httpx
import pytest
import uvicorn

from adapters import AdapterConfig, random_adapter, save_adapter
from adapters.testing import save_base
from server.app import create_app
from server.settings import ServerSettings
from tests.conftest import make_model

ADAPTERS = {  # name -> (kind, prompt length)
    "e2e": ("input-tuning", 5),
    "fr-en": ("input-tuning", 3),
    "dart": ("input-tuning", 0),
    "prompt-only": ("prompt-tuning", 4),
    "overnight": ("input-tuning", 7),
    "de-en": ("prompt-tuning", 2),
}


def write_adapter(folder: Path, name: str, base, kind: str, prompt_length: int, seed: int) -> Path:
    config = AdapterConfig(
        kind, base.d_model, prompt_length, base_model=base.name, base_fingerprint=base.fingerprint
    )
    return save_adapter(random_adapter(config, seed=seed, scale=0.5), folder / f"{name}.safetensors")


@pytest.fixture(scope="session")
def model_dir(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("served")
    base = make_model("t5").base
    save_base(base, folder / "base")
    return folder


@pytest.fixture
def adapter_dir(model_dir, tmp_path) -> Path:
    """A fresh adapter folder per test (tests change it)."""
    from adapters import load_base

    base = load_base(model_dir / "base", device="cpu")
    folder = tmp_path / "adapters"
    for seed, (name, (kind, plen)) in enumerate(ADAPTERS.items(), start=1):
        write_adapter(folder, name, base, kind, plen, seed)
    return folder


def settings_for(model_dir: Path, adapter_dir: Path, **overrides) -> ServerSettings:
    values = dict(
        model=str(model_dir / "base"),
        adapter_dir=adapter_dir,
        device="cpu",
        port=0,
        max_wait_ms=30,
        device_slots=4,
        host_slots=8,
        drain_timeout_s=10,
    )
    values.update(overrides)
    return ServerSettings(**values)


class LiveServer:
    """uvicorn in a thread on a free loopback port, stopped like SIGTERM would."""

    def __init__(self, settings: ServerSettings) -> None:
        self.app = create_app(settings)
        self.server = uvicorn.Server(
            uvicorn.Config(self.app, host="127.0.0.1", port=0, log_level="warning", lifespan="on")
        )
        self.thread = threading.Thread(target=self.server.run, daemon=True)

    def __enter__(self) -> LiveServer:
        self.thread.start()
        deadline = time.monotonic() + 30
        while not (self.server.started and self.server.servers):
            assert time.monotonic() < deadline, "server did not start"
            time.sleep(0.01)
        port = self.server.servers[0].sockets[0].getsockname()[1]
        self.url = f"http://127.0.0.1:{port}"
        while httpx.get(self.url + "/ready").status_code != 200:
            assert time.monotonic() < deadline, "server did not become ready"
            time.sleep(0.02)
        return self

    @property
    def engine(self):
        return self.app.state.engine

    def __exit__(self, *exc) -> None:
        self.server.should_exit = True
        self.thread.join(30)


class ServerProcess:
    """``inputtune serve`` in a process of its own on a free loopback port (for load tests, where a
    client in the server's own process would share its interpreter lock): ``settings`` become
    ``INPUTTUNE_*`` variables. Stopped with SIGTERM on exit, killed if it does not stop."""

    def __init__(self, model_dir: Path, adapter_dir: Path, **settings) -> None:
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            self.port = s.getsockname()[1]
        self.url = f"http://127.0.0.1:{self.port}"
        values = {"max_wait_ms": 30, "drain_timeout_s": 10, **settings}
        self.env = dict(os.environ) | {f"INPUTTUNE_{k.upper()}": str(v) for k, v in values.items()}
        self.command = [
            sys.executable, "-m", "server.cli", "serve", "--model", str(model_dir / "base"),
            "--adapter-dir", str(adapter_dir), "--port", str(self.port), "--device", "cpu",
        ]  # fmt: skip

    def __enter__(self) -> ServerProcess:
        # its log goes to a file: a pipe nobody reads would fill up and block the server
        self.log = tempfile.TemporaryFile("w+")
        self.proc = subprocess.Popen(self.command, env=self.env, stdout=self.log, stderr=subprocess.STDOUT)
        self.pid = self.proc.pid
        deadline = time.monotonic() + 60
        while True:
            assert self.proc.poll() is None, self.read_log()
            try:
                if httpx.get(self.url + "/ready").status_code == 200:
                    return self
            except httpx.TransportError:
                pass
            assert time.monotonic() < deadline, "the server never became ready"
            time.sleep(0.1)

    def __exit__(self, *exc) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(10)
        self.output = self.read_log()
        self.log.close()

    def read_log(self) -> str:
        self.log.seek(0)
        return self.log.read()


@pytest.fixture
def served_process(model_dir, adapter_dir):
    """Factory: ``with served_process(**settings) as server:`` (a ServerProcess)."""

    def start(**settings) -> ServerProcess:
        return ServerProcess(model_dir, adapter_dir, **settings)

    return start


@pytest.fixture
def live(model_dir, adapter_dir):
    """Factory: ``with live(**settings) as server:``."""

    def start(**overrides) -> LiveServer:
        return LiveServer(settings_for(model_dir, adapter_dir, **overrides))

    return start


def failing_once(error: BaseException):
    """A wrap_model_calls wrapper: the first model call raises ``error``, the rest run."""
    calls = {"n": 0}

    def wrapper(real, *args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 1:
            raise error
        return real(*args, **kwargs)

    return wrapper


def wrap_model_calls(server: LiveServer, monkeypatch, wrapper) -> None:
    """Route every model call of the device thread through ``wrapper(real, *args, **kwargs)``:
    static batches (AdaptedModel.generate) and continuous-batching admissions and steps."""
    from adapters.decoding.continuous import ContinuousBatch

    model = server.engine.model
    real_generate = model.generate
    model.generate = lambda *a, **k: wrapper(real_generate, *a, **k)
    for name in ("admit", "step"):
        real = getattr(ContinuousBatch, name)
        monkeypatch.setattr(
            ContinuousBatch,
            name,
            lambda self, *a, _real=real, **k: wrapper(lambda *aa, **kk: _real(self, *aa, **kk), *a, **k),
        )
