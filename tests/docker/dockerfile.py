"""Read what a Dockerfile gives its image (ENV, ENTRYPOINT, CMD, HEALTHCHECK, ...) and what a
.dockerignore lets into the build context, so tests can check and run exactly that.

Only what these projects' Dockerfiles use is understood; anything else is an error, not a guess.
"""

from __future__ import annotations

import json
import re
import shlex
from dataclasses import dataclass, field
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]
DOCKER_DIR = REPO_ROOT / "docker"
DOCKERFILES = {"gpu": DOCKER_DIR / "Dockerfile", "cpu": DOCKER_DIR / "Dockerfile.cpu"}
COMPOSE_FILE = DOCKER_DIR / "compose.yaml"
DOCKERIGNORE = REPO_ROOT / ".dockerignore"


def known_variable(name: str) -> bool:
    """Whether an INPUTTUNE_* variable means something (pydantic-settings ignores unknown ones)."""
    from server.settings import ServerSettings

    field = name.removeprefix("INPUTTUNE_").lower()
    return field in ServerSettings.model_fields


@dataclass
class Instruction:
    keyword: str  # upper case: FROM, RUN, ENV, ...
    args: str  # the rest of the (joined) line


@dataclass
class Image:
    """The final stage of a Dockerfile, as far as running the image is concerned."""

    base: str  # the FROM image, with the default of a build argument (FROM ${BASE}) put in
    instructions: list[Instruction]
    global_args: dict[str, str] = field(default_factory=dict)  # ARGs before FROM, with defaults
    env: dict[str, str] = field(default_factory=dict)
    entrypoint: list[str] = field(default_factory=list)
    cmd: list[str] = field(default_factory=list)
    healthcheck: list[str] = field(default_factory=list)  # the command, without "CMD"
    healthcheck_options: dict[str, str] = field(default_factory=dict)
    expose: list[str] = field(default_factory=list)
    volumes: list[str] = field(default_factory=list)
    stopsignal: str | None = None
    user: str | None = None
    workdir: str | None = None

    @property
    def command(self) -> list[str]:
        """What the container runs: ENTRYPOINT followed by CMD."""
        return self.entrypoint + self.cmd


def instructions(text: str) -> list[Instruction]:
    """Logical instructions: continuation lines joined, comments and blank lines dropped."""
    result, pending = [], ""
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue  # comments may sit inside a continued instruction too
        if line.endswith("\\"):
            pending += line[:-1] + " "
            continue
        line = pending + line
        pending = ""
        keyword, _, args = line.partition(" ")
        result.append(Instruction(keyword.upper(), args.strip()))
    assert not pending, "the Dockerfile ends inside a continued line"
    return result


def _exec_form(args: str, what: str) -> list[str]:
    try:
        value = json.loads(args)
    except json.JSONDecodeError as e:
        raise ValueError(
            f"{what} must be in exec form (a JSON list), not {args!r}: in shell form /bin/sh is PID 1 "
            "and SIGTERM never reaches the server"
        ) from e
    assert isinstance(value, list) and all(isinstance(v, str) for v in value), f"{what}: {args!r}"
    return value


def _expand(value: str, variables: dict[str, str]) -> str:
    """$NAME and ${NAME} from earlier ENV/ARG; unknown names (the base image's) stay as they are."""

    def sub(m: re.Match) -> str:
        name = m.group(1) or m.group(2)
        return variables.get(name, m.group(0))

    return re.sub(r"\$\{(\w+)\}|\$(\w+)", sub, value)


def _pairs(args: str, variables: dict[str, str]) -> dict[str, str]:
    words = shlex.split(args)
    if words and "=" not in words[0]:  # legacy `ENV NAME value`
        return {words[0]: _expand(" ".join(words[1:]), variables)}
    pairs = {}
    for word in words:
        name, sep, value = word.partition("=")
        assert sep, f"not NAME=value: {word!r}"
        pairs[name] = _expand(value, {**variables, **pairs})
    return pairs


def parse_dockerfile(path: Path) -> Image:
    """The final stage of ``path``. ENV values have earlier ENV/ARG values substituted; FROM has
    the defaults of the ARGs declared before it."""
    image: Image | None = None
    args: dict[str, str] = {}
    global_args: dict[str, str] = {}
    for ins in instructions(path.read_text()):
        if ins.keyword == "FROM":
            base = _expand(ins.args.split()[0], global_args)
            image = Image(base=base, instructions=[], global_args=dict(global_args))
            args = {}
            continue
        if ins.keyword == "ARG" and image is None:  # a global argument, for FROM
            global_args.update(_pairs(ins.args, global_args) if "=" in ins.args else {ins.args: ""})
            continue
        assert image is not None, f"{path}: {ins.keyword} before FROM"
        image.instructions.append(ins)
        variables = {**args, **image.env}
        if ins.keyword == "ARG":
            args.update(_pairs(ins.args, variables) if "=" in ins.args else {ins.args: ""})
        elif ins.keyword == "ENV":
            image.env.update(_pairs(ins.args, variables))
        elif ins.keyword == "ENTRYPOINT":
            image.entrypoint = _exec_form(ins.args, "ENTRYPOINT")
            image.cmd = []  # Docker resets CMD when ENTRYPOINT is set
        elif ins.keyword == "CMD":
            image.cmd = _exec_form(ins.args, "CMD")
        elif ins.keyword == "HEALTHCHECK":
            m = re.fullmatch(r"((?:--\S+\s+)*)CMD\s+(.+)", ins.args, re.S)
            assert m, f"HEALTHCHECK must be [--options] CMD [...]: {ins.args!r}"
            image.healthcheck = _exec_form(m.group(2), "HEALTHCHECK CMD")
            image.healthcheck_options = dict(o[2:].partition("=")[::2] for o in m.group(1).split())
        elif ins.keyword == "EXPOSE":
            image.expose += ins.args.split()
        elif ins.keyword == "VOLUME":
            image.volumes += _exec_form(ins.args, "VOLUME") if ins.args.startswith("[") else ins.args.split()
        elif ins.keyword == "STOPSIGNAL":
            image.stopsignal = ins.args
        elif ins.keyword == "USER":
            image.user = ins.args
        elif ins.keyword == "WORKDIR":
            image.workdir = ins.args
    assert image is not None, f"{path} has no FROM"
    return image


# ---------------------------------------------------------------- .dockerignore


def _pattern_regex(pattern: str) -> re.Pattern:
    """Docker's pattern syntax: * and ? stay inside one path segment, ** crosses segments."""
    out, i = [], 0
    while i < len(pattern):
        if pattern.startswith("**/", i):
            out.append("(?:.*/)?")
            i += 3
        elif pattern.startswith("**", i):
            out.append(".*")
            i += 2
        elif pattern[i] == "*":
            out.append("[^/]*")
            i += 1
        elif pattern[i] == "?":
            out.append("[^/]")
            i += 1
        elif pattern[i] == "[":
            end = pattern.index("]", i)
            out.append(pattern[i : end + 1])
            i = end + 1
        else:
            out.append(re.escape(pattern[i]))
            i += 1
    return re.compile("".join(out))


class DockerIgnore:
    """Which paths a .dockerignore leaves in the build context (moby's patternmatcher rules: the
    last matching pattern wins, and a pattern that matches a folder matches everything in it)."""

    def __init__(self, text: str) -> None:
        self.patterns: list[tuple[bool, re.Pattern]] = []  # (is_exception, regex)
        for line in text.splitlines():
            line = line.strip()
            if not line or line.startswith("#"):
                continue
            exception = line.startswith("!")
            pattern = line[1:].strip() if exception else line
            pattern = re.sub(r"/+", "/", pattern).strip("/") or "."
            self.patterns.append((exception, _pattern_regex(pattern)))

    def included(self, path: str) -> bool:
        """Whether ``path`` (relative to the context root, with /) is sent to the builder."""
        parts = path.strip("/").split("/")
        prefixes = ["/".join(parts[: i + 1]) for i in range(len(parts))]
        excluded = False
        for exception, regex in self.patterns:
            if exception != excluded:
                continue  # an exclusion cannot exclude more, an exception cannot re-include more
            if any(regex.fullmatch(p) for p in prefixes):
                excluded = not exception
        return not excluded
