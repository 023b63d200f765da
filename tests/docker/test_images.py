"""What the Dockerfiles declare: the container contract, layer order, pinning, the build context."""

from __future__ import annotations

import re
import subprocess

import pytest

from .dockerfile import (
    DOCKERFILES,
    DOCKERIGNORE,
    REPO_ROOT,
    DockerIgnore,
    known_variable,
    parse_dockerfile,
)

IMAGES = {kind: parse_dockerfile(path) for kind, path in DOCKERFILES.items()}


def test_both_images_run_the_same_command_with_the_same_settings():
    gpu, cpu = IMAGES["gpu"], IMAGES["cpu"]
    assert gpu.command == cpu.command == ["inputtune", "serve"]
    assert gpu.healthcheck == cpu.healthcheck
    assert gpu.volumes == cpu.volumes
    assert {k: v for k, v in gpu.env.items() if k != "INPUTTUNE_DEVICE"} == {
        k: v for k, v in cpu.env.items() if k != "INPUTTUNE_DEVICE"
    }
    assert (gpu.env["INPUTTUNE_DEVICE"], cpu.env["INPUTTUNE_DEVICE"]) == ("cuda", "cpu")


@pytest.mark.parametrize("kind", sorted(IMAGES))
def test_every_inputtune_variable_is_a_setting(kind):
    """pydantic-settings ignores unknown INPUTTUNE_* variables, so a typo would pass silently."""
    unknown = [
        name for name in IMAGES[kind].env if name.startswith("INPUTTUNE_") and not known_variable(name)
    ]
    assert not unknown, f"not server settings: {unknown}"


@pytest.mark.parametrize("kind", sorted(IMAGES))
def test_container_contract(kind):
    image = IMAGES[kind]
    env = image.env
    assert image.user and image.user.split(":")[0] not in {"root", "0"}, "must run as a non-root user"
    assert image.user.split(":")[0].isdigit(), "a numeric user, so runtimes can check runAsNonRoot"
    assert env["INPUTTUNE_HOST"] == "0.0.0.0", "inside a container the server must listen on all interfaces"
    assert image.expose == [env["INPUTTUNE_PORT"]]
    assert image.stopsignal == "SIGTERM"
    assert float(env["INPUTTUNE_DRAIN_TIMEOUT_S"]) > 0
    assert {"/models", "/adapters", env["HF_HOME"]} <= set(image.volumes)
    # the entry-command test runs the image's /opt/venv/bin/inputtune as this venv's, from /app
    assert env["PATH"].startswith("/opt/venv/bin:")
    assert any(re.search(r"-m venv /opt/venv\b", i.args) for i in image.instructions if i.keyword == "RUN")
    assert image.workdir == "/app"
    assert "INPUTTUNE_MODEL" not in env and "INPUTTUNE_ADAPTER_DIR" not in env, (
        "the images serve the embedded default unless told otherwise"
    )


@pytest.mark.parametrize("kind", sorted(IMAGES))
def test_healthcheck_asks_ready_on_the_served_port(kind):
    """The command runs inside the container: loopback, /ready, and INPUTTUNE_PORT (whose value the
    entry-command test changes, so that test also proves the check follows the variable)."""
    image = IMAGES[kind]
    command = " ".join(image.healthcheck)
    assert image.healthcheck[0] == "python", "curl is not in the images"
    assert "127.0.0.1" in command and "/ready" in command
    assert "INPUTTUNE_PORT" in command
    fallback = re.search(r"INPUTTUNE_PORT['\"], ['\"](\d+)", command)
    assert fallback and fallback.group(1) == image.env["INPUTTUNE_PORT"]
    options = image.healthcheck_options
    assert {"interval", "timeout", "start-period", "retries"} <= set(options)


@pytest.mark.parametrize("kind", sorted(IMAGES))
def test_no_secret_is_baked_in(kind):
    for ins in IMAGES[kind].instructions:
        if ins.keyword in {"ENV", "ARG"}:
            assert not re.search(r"(KEY|SECRET|TOKEN|PASSWORD)\w*=", ins.args, re.I), ins.args


@pytest.mark.parametrize("kind", sorted(IMAGES))
def test_dependencies_are_installed_before_the_source_is_copied(kind):
    """Editing the source must not re-run the dependency layers; the project installs like any
    package (not editable: the image holds an installed copy, the demo with it)."""
    steps = [f"{ins.keyword} {ins.args}" for ins in IMAGES[kind].instructions]

    def index(pattern: str) -> int:
        found = [i for i, step in enumerate(steps) if re.search(pattern, step)]
        assert len(found) == 1, f"{pattern!r} in {found}"
        return found[0]

    torch = index(r"^RUN pip install .*torch==")
    manifest = index(r"^COPY pyproject\.toml ")
    deps = index(r"^RUN .*pip install .*-r ")
    source = index(r"^COPY \. ")
    project = index(r"^RUN pip install .*--no-deps \.(\s|$)")
    assert " -e " not in steps[project] and "--editable" not in steps[project]
    assert torch < manifest < deps < source < project


def test_the_images_share_every_step_but_the_base_the_torch_index_and_the_device():
    """CI builds and runs the CPU image (docker/build-local.sh); the GPU image's CUDA base cannot
    be had there. Step for step the same, the CPU build covers the GPU image's steps too."""

    def steps(kind: str) -> list[str]:
        out = []
        for ins in IMAGES[kind].instructions:
            args = ins.args
            if ins.keyword == "ARG":
                args = re.sub(r"^TORCH_INDEX_URL=\S+$", "TORCH_INDEX_URL=<index>", args)
            elif ins.keyword == "ENV":
                args = re.sub(r"\bINPUTTUNE_DEVICE=\S+", "INPUTTUNE_DEVICE=<device>", args)
            out.append(f"{ins.keyword} {args}")
        return out

    assert steps("gpu") == steps("cpu")
    for kind, path in DOCKERFILES.items():
        assert set(IMAGES[kind].global_args) == {"BASE"}, kind
        assert "\nFROM ${BASE}\n" in path.read_text(), f"{kind}: the base is the BASE build argument"
        assert "ARG TORCH_INDEX_URL=" in path.read_text()
    assert IMAGES["cpu"].base.startswith("debian:12"), "build-local.sh makes a Debian 12 base in its place"


def test_images_pin_their_bases_and_the_tested_torch():
    ci = (REPO_ROOT / ".ci" / "run").read_text()
    tested_torch = re.search(r"torch==([\w.+]+)", ci).group(1)
    for kind, path in DOCKERFILES.items():
        base = IMAGES[kind].base
        name, _, tag = base.partition(":")
        assert tag and tag != "latest" and re.match(r"\d", tag), f"{kind}: pin the base tag, not {base!r}"
        assert f"ARG TORCH_VERSION={tested_torch}\n" in path.read_text(), f"{kind}: torch != CI's"


def tracked(*paths: str) -> list[str]:
    out = subprocess.run(
        ["git", "ls-files", "--cached", "--others", "--exclude-standard", *paths],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    return out.split()


def test_build_context_holds_what_the_images_install_and_nothing_else():
    ignore = DockerIgnore(DOCKERIGNORE.read_text())
    needed = ["pyproject.toml", "README.md", *tracked("adapters", "server", "training", "demo")]
    assert all(path.endswith((".toml", ".md")) or "/" in path for path in needed)
    left_out = [p for p in needed if not ignore.included(p)]
    assert not left_out, f"the images need these but .dockerignore leaves them out: {left_out[:10]}"
    for path in ["demo/base/config.json", "demo/adapters/e2e.safetensors"]:  # demo/ may not exist yet
        assert ignore.included(path)
    unwanted = [
        ".git/HEAD",
        ".venv/bin/python",
        "tests/conftest.py",
        "runs/e2e/checkpoint.safetensors",
        "data/e2e/train.csv",
        "docker/secrets/admin_key",
        ".env",
        "docker/.env",
        ".pytest_cache/v/cache/nodeids",
        "inputtune.egg-info/PKG-INFO",
        "server/__pycache__/app.cpython-312.pyc",
        *tracked("tests", "docs", "scripts", ".ci"),
    ]
    sent = [p for p in unwanted if ignore.included(p)]
    assert not sent, f".dockerignore sends these to the builder: {sent[:10]}"


def test_dockerignore_matcher_follows_docker_rules():
    ignore = DockerIgnore("*\n!keep\nkeep/**/*.log\n!keep/important.log\n")
    assert not ignore.included("other/file")
    assert ignore.included("keep/a/b.py")
    assert not ignore.included("keep/a/b.log") and not ignore.included("keep/b.log")
    assert ignore.included("keep/important.log")
