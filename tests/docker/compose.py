"""Read docker/compose.yaml's services as Compose would resolve them (variables at their defaults)."""

from __future__ import annotations

import re
from pathlib import Path

import yaml

from .dockerfile import COMPOSE_FILE, DOCKER_DIR, DOCKERFILES


def interpolate(value: str) -> str:
    """``${NAME:-default}`` / ``${NAME-default}`` become the default, as with NAME unset; a variable
    without a default is an error here, so the file works without a .env."""

    def sub(m: re.Match) -> str:
        if m.group(0) == "$$":
            return "$"
        if m.group("default") is None:
            raise ValueError(f"{m.group(0)} in {COMPOSE_FILE.name} has no default")
        return m.group("default")

    return re.sub(r"\$\$|\$\{(?P<name>\w+)(?::?-(?P<default>[^}]*))?\}|\$(?P<bare>\w+)", sub, value)


def load_compose() -> dict:
    return yaml.safe_load(COMPOSE_FILE.read_text())


def service(name: str) -> dict:
    return load_compose()["services"][name]


def service_env(spec: dict) -> dict[str, str]:
    env = spec.get("environment") or {}
    if isinstance(env, list):  # ["NAME=value", ...]
        env = dict(item.partition("=")[::2] for item in env)
    return {k: interpolate(str(v)) for k, v in env.items()}


def service_dockerfile(spec: dict) -> Path:
    """The Dockerfile a service builds, which must be one of docker/'s."""
    build = spec["build"]
    context = (DOCKER_DIR / build["context"]).resolve()
    path = (context / build.get("dockerfile", "Dockerfile")).resolve()
    assert path in DOCKERFILES.values(), f"{path} is not one of {list(DOCKERFILES.values())}"
    return path


def volume_targets(spec: dict) -> dict[str, str]:
    """container path -> mode ('ro' or 'rw') for the service's short-syntax volumes."""
    targets = {}
    for item in spec.get("volumes") or []:
        parts = interpolate(item).split(":")
        targets[parts[1]] = parts[2] if len(parts) > 2 else "rw"
    return targets


def duration_s(text: str) -> float:
    """Compose durations: '75s', '1m30s', '500ms'."""
    units = {"h": 3600, "m": 60, "s": 1, "ms": 0.001, "us": 1e-6}
    parts = re.findall(r"(\d+(?:\.\d+)?)(ms|us|h|m|s)", text)
    assert parts and "".join(a + b for a, b in parts) == text, f"not a duration: {text!r}"
    return sum(float(a) * units[b] for a, b in parts)
