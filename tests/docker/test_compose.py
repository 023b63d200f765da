"""What docker/compose.yaml declares, checked against the images it builds.

`docker-compose config` (in .ci/run) validates the file's schema; these tests check its meaning.
"""

from __future__ import annotations

from pathlib import PurePosixPath

from .compose import (
    duration_s,
    interpolate,
    load_compose,
    service,
    service_dockerfile,
    service_env,
    volume_targets,
)
from .dockerfile import DOCKERFILES, known_variable, parse_dockerfile


def effective_env(spec: dict) -> dict[str, str]:
    return {**parse_dockerfile(service_dockerfile(spec)).env, **service_env(spec)}


def test_gpu_service_reserves_one_nvidia_gpu_and_builds_the_gpu_image():
    spec = service("inputtune")
    assert service_dockerfile(spec) == DOCKERFILES["gpu"]
    assert "profiles" not in spec, "`docker compose up` starts the GPU server"
    devices = spec["deploy"]["resources"]["reservations"]["devices"]
    assert devices == [{"driver": "nvidia", "count": 1, "capabilities": ["gpu"]}]


def test_gpu_service_serves_your_model_from_volumes():
    spec = service("inputtune")
    env, volumes = effective_env(spec), volume_targets(spec)
    assert PurePosixPath(env["INPUTTUNE_MODEL"]).is_relative_to("/models")
    assert volumes["/models"] == "ro"
    assert env["INPUTTUNE_ADAPTER_DIR"] == "/adapters" and volumes["/adapters"] == "rw", "uploads write there"
    assert env["HF_HOME"] in volumes
    secret = PurePosixPath(env["INPUTTUNE_ADMIN_API_KEY_FILE"])
    assert secret.parent == PurePosixPath("/run/secrets") and secret.name in spec["secrets"]
    assert "INPUTTUNE_ADMIN_API_KEY" not in env, "the key comes from the secret file, not the compose file"
    assert secret.name in load_compose()["secrets"]


def test_demo_profile_serves_the_embedded_default_on_cpu_without_volumes():
    spec = service("demo")
    assert spec["profiles"] == ["cpu"]
    assert service_dockerfile(spec) == DOCKERFILES["cpu"]
    assert not spec.get("volumes") and not spec.get("secrets") and "deploy" not in spec
    assert "INPUTTUNE_MODEL" not in effective_env(spec)


def test_services_agree_with_their_images():
    for name, spec in load_compose()["services"].items():
        image = parse_dockerfile(service_dockerfile(spec))
        env = effective_env(spec)
        assert [n for n in service_env(spec) if not known_variable(n)] == [], name
        assert spec["healthcheck"]["test"] == ["CMD", *image.healthcheck], f"{name}: healthcheck drifted"
        targets = [interpolate(p).rsplit(":", 1)[-1] for p in spec["ports"]]
        assert targets == [env["INPUTTUNE_PORT"]], name
        assert spec["restart"] in {"always", "unless-stopped", "on-failure"}
        assert spec.get("stop_signal", image.stopsignal) == image.stopsignal == "SIGTERM"


def test_stop_grace_period_outlasts_the_drain():
    """uvicorn waits up to the drain timeout for in-flight requests, then the engine as long again
    for its last batch; Docker must not SIGKILL before both are over."""
    for name, spec in load_compose()["services"].items():
        drain = float(effective_env(spec)["INPUTTUNE_DRAIN_TIMEOUT_S"])
        assert duration_s(spec["stop_grace_period"]) > 2 * drain, name


def test_compose_durations():
    assert duration_s("75s") == 75 and duration_s("1m30s") == 90 and duration_s("500ms") == 0.5
