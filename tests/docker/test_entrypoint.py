"""Each image's entry command, read from its Dockerfile and run here as the container would run it.

No Docker engine runs on CI machines: CI builds and runs the CPU image with buildah
(docker/build-local.sh), but the GPU image's CUDA base cannot be had there. Here, for both, the
command the container runs (ENTRYPOINT + CMD) is started as a process with the image's ENV and
nothing else, and must serve the embedded default: /ready and POST /generate answer 200, the
HEALTHCHECK command passes, and STOPSIGNAL stops it cleanly. The compose GPU service's
environment (your model, adapters and admin-key secret) is run the same way. Change a
Dockerfile's command or environment, or the compose service's, in a way that breaks serving
and these tests fail.

Only what must differ outside a container is changed (``process_env``): image folders such as
/var/cache/inputtune live under a temporary folder, the port is a free one, the image's
/opt/venv is this virtual environment and its /app (the source) this repository, and a GPU
image's INPUTTUNE_DEVICE=cuda becomes cpu when no GPU is visible.
"""

from __future__ import annotations

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

from server.demo import default_model_and_adapters

from .compose import service, service_dockerfile, service_env
from .dockerfile import DOCKERFILES, REPO_ROOT, Image, parse_dockerfile

APP_DIR = "/app"  # where the Dockerfiles put the source; here, the repository


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def process_env(image_env: dict[str, str], root: Path) -> dict[str, str]:
    """The container's environment for a process on this machine (see the module docstring)."""
    env = {
        "HOME": str(root / "home"),
        # the image's PATH puts its venv first; here this venv comes first
        "PATH": os.pathsep.join([str(Path(sys.executable).parent), os.environ.get("PATH", "")]),
    }
    for name, value in image_env.items():
        if name == "PATH":
            continue
        if name == "INPUTTUNE_PORT":
            value = str(free_port())
        elif name == "INPUTTUNE_DEVICE" and value.startswith("cuda") and not torch.cuda.is_available():
            value = "cpu"
        elif value.startswith("/"):  # an image folder (a cache, a volume, a secret)
            local = root / value.lstrip("/")
            local.parent.mkdir(parents=True, exist_ok=True)
            value = str(local)
        env[name] = value
    return env


def resolve(command: list[str], env: dict[str, str]) -> list[str]:
    """argv[0] looked up on the process's PATH, as the container runtime does."""
    found = shutil.which(command[0], path=env["PATH"])
    assert found, f"{command[0]!r} is not on PATH {env['PATH']!r}: is the project installed?"
    return [found, *command[1:]]


class ContainerProcess:
    """``command`` run with exactly ``env`` in the image's working directory, output to a file."""

    def __init__(self, image: Image, command: list[str], env: dict[str, str], log: Path) -> None:
        self.image, self.env, self.log = image, env, log
        self.admin_key: str | None = None
        self.url = f"http://127.0.0.1:{env['INPUTTUNE_PORT']}"
        cwd = REPO_ROOT if image.workdir == APP_DIR else Path(env["HOME"])
        Path(env["HOME"]).mkdir(parents=True, exist_ok=True)
        with open(log, "w") as out:
            self.proc = subprocess.Popen(
                resolve(command, env), env=env, cwd=cwd, stdout=out, stderr=subprocess.STDOUT
            )

    def output(self) -> str:
        return self.log.read_text()[-3000:]

    def wait_ready(self, timeout_s: float = 90) -> None:
        deadline = time.monotonic() + timeout_s
        while True:
            assert self.proc.poll() is None, f"the server exited:\n{self.output()}"
            try:
                if httpx.get(self.url + "/ready", timeout=5).status_code == 200:
                    return
            except httpx.TransportError:
                pass
            assert time.monotonic() < deadline, f"never ready:\n{self.output()}"
            time.sleep(0.1)

    def healthcheck(self) -> subprocess.CompletedProcess:
        """The image's HEALTHCHECK command, with the container's environment."""
        return subprocess.run(
            resolve(self.image.healthcheck, self.env),
            env=self.env,
            capture_output=True,
            text=True,
            timeout=float(self.image.healthcheck_options.get("timeout", "30s").rstrip("s")) + 10,
        )

    def stop(self) -> int:
        """``docker stop``: the image's STOPSIGNAL, then the exit code."""
        self.proc.send_signal(getattr(signal, self.image.stopsignal or "SIGTERM"))
        return self.proc.wait(float(self.env.get("INPUTTUNE_DRAIN_TIMEOUT_S", "30")) * 2 + 30)

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()


def prepare_your_model(env: dict[str, str], scratch: Path) -> str:
    """Fill the compose service's model folder, adapter folder and admin-key secret (mapped
    here) with the embedded default's base and adapters and a key; returns the key."""
    base, adapters = default_model_and_adapters(scratch)
    Path(env["INPUTTUNE_MODEL"]).symlink_to(base, target_is_directory=True)  # mounted read-only
    shutil.copytree(adapters, env["INPUTTUNE_ADAPTER_DIR"])
    key = "test-admin-key-0123456789"
    Path(env["INPUTTUNE_ADMIN_API_KEY_FILE"]).write_text(key + "\n")
    return key


@pytest.fixture(scope="module")
def servers(tmp_path_factory):
    """Every configuration started at once: start-up is mostly imports, so they overlap.

    ``image:gpu`` / ``image:cpu``: each Dockerfile's command and ENV. ``compose:inputtune``: the
    GPU image's command with compose.yaml's service environment on top (your model in /models,
    adapters in /adapters, the admin key as a secret file)."""
    started: dict[str, ContainerProcess] = {}
    try:
        for kind, path in sorted(DOCKERFILES.items()):
            image = parse_dockerfile(path)
            root = tmp_path_factory.mktemp(f"image-{kind}")
            env = process_env(image.env, root / "container")
            started[f"image:{kind}"] = ContainerProcess(image, image.command, env, root / "server.log")

        spec = service("inputtune")
        image = parse_dockerfile(service_dockerfile(spec))
        root = tmp_path_factory.mktemp("compose-inputtune")
        env = process_env({**image.env, **service_env(spec)}, root / "container")
        key = prepare_your_model(env, root / "scratch")
        started["compose:inputtune"] = ContainerProcess(image, image.command, env, root / "server.log")
        started["compose:inputtune"].admin_key = key
        yield started
    finally:
        for server in started.values():
            server.kill()


def generate(server: ContainerProcess, adapter: str) -> httpx.Response:
    return httpx.post(
        server.url + "/generate",
        params={"adapter": adapter},
        json={"inputs": "name[The Eagle], food[French]", "parameters": {"max_new_tokens": 8}},
        timeout=60,
    )


def adapter_names(server: ContainerProcess) -> list[str]:
    reply = httpx.get(server.url + "/adapters", timeout=10)
    assert reply.status_code == 200, reply.text
    return [a["name"] for a in reply.json()]


@pytest.mark.parametrize("kind", sorted(DOCKERFILES))
def test_image_command_serves_the_embedded_default(kind, servers):
    server = servers[f"image:{kind}"]
    server.wait_ready()
    names = adapter_names(server)
    assert names, "the embedded default has no adapters"
    reply = generate(server, names[0])
    assert reply.status_code == 200, reply.text
    assert reply.json()["adapter"] == names[0]
    assert isinstance(reply.json()["generated_text"], str)

    check = server.healthcheck()
    assert check.returncode == 0, f"HEALTHCHECK failed on a ready server:\n{check.stderr}"
    assert server.stop() == 0, server.output()
    check = server.healthcheck()
    assert check.returncode != 0, "HEALTHCHECK passed with the server stopped"


def test_compose_service_serves_your_model_and_takes_uploads(servers):
    server = servers["compose:inputtune"]
    server.wait_ready()
    ready = httpx.get(server.url + "/ready").json()
    assert ready["model"] == server.env["INPUTTUNE_MODEL"], ready
    names = adapter_names(server)
    assert names, "no adapters found in the adapter volume"
    upload = (Path(server.env["INPUTTUNE_ADAPTER_DIR"]) / f"{names[0]}.safetensors").read_bytes()

    wrong = httpx.put(
        server.url + "/adapters/uploaded", content=upload, headers={"Authorization": "Bearer nope"}
    )
    assert wrong.status_code == 403, wrong.text
    put = httpx.put(
        server.url + "/adapters/uploaded",
        content=upload,
        headers={"Authorization": f"Bearer {server.admin_key}"},
        timeout=30,
    )
    assert put.status_code == 201, put.text
    assert (Path(server.env["INPUTTUNE_ADAPTER_DIR"]) / "uploaded.safetensors").is_file()
    reply = generate(server, "uploaded")
    assert reply.status_code == 200, reply.text
    assert reply.json()["generated_text"] == generate(server, names[0]).json()["generated_text"]

    assert server.healthcheck().returncode == 0
    assert server.stop() == 0, server.output()
