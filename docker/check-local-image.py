#!/usr/bin/env python3
"""Check an image built by docker/build-local.sh: what it holds, and the image run as a container.

    python3 docker/check-local-image.py IMAGE [--forbid TEXT]... [--forbid-file FILE]...

1. Its configuration (as built, not as the Dockerfile reads): a numeric non-root USER, HEALTHCHECK,
   the volumes, port and STOPSIGNAL, ENTRYPOINT + CMD.
2. Nothing of the build machine in it: no --forbid text (build paths, the mounted pip settings and
   wheel folders) and nothing of a --forbid-file (the CA bundle) in the image's history, its
   configuration, or any file of any layer (each layer's tar is read whole, files that a later
   layer deletes included); no pip settings file at all.
3. The image run with buildah (chroot isolation: the host's network), as `docker run` would run it:
   its own ENTRYPOINT + CMD, ENV, USER and WORKDIR; only INPUTTUNE_PORT (a free one) and
   INPUTTUNE_HOST (127.0.0.1, so nothing listens beyond loopback) are changed.
   a. The image's defaults: the embedded demo. /ready and POST /generate?adapter=fr-en answer 200,
      the HEALTHCHECK command (run in the same container) passes, the server runs as the image's
      user, and SIGTERM ends it with exit code 0 within INPUTTUNE_DRAIN_TIMEOUT_S.
   b. The settings compose gives the GPU service, on the demo base: INPUTTUNE_ADAPTER_DIR=/adapters
      (the image's volume) and the admin key as a mounted secret file. An upload with the key
      (PUT /adapters/NAME, Authorization: Bearer) lands in /adapters owned by the image's user and
      serves; one without the key is refused; SIGTERM exits 0.
Exits non-zero with the failed check's message.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import re
import secrets
import signal
import socket
import subprocess
import sys
import tarfile
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
UPLOAD = REPO / "demo" / "adapters" / "fr-en.safetensors"  # a real adapter of the demo base
FR = "Un homme fait du vélo dans la rue."


def say(message: str) -> None:
    print(f"check-local-image: {message}", flush=True)


def fail(message: str) -> None:
    raise SystemExit(f"check-local-image: FAILED: {message}")


def buildah(*args: str) -> str:
    done = subprocess.run(["buildah", *args], capture_output=True, text=True)
    if done.returncode:
        fail(f"buildah {' '.join(args)}: {done.stderr.strip()}")
    return done.stdout


# ------------------------------------------------------------------ 1. configuration


def check_config(config: dict) -> None:
    user = config.get("User", "")
    uid = user.split(":")[0]
    if not uid.isdigit() or uid == "0":
        fail(f"USER {user!r}: must be a numeric non-root user")
    test = (config.get("Healthcheck") or {}).get("Test") or []
    if not test or test[0] != "CMD":
        fail(f"no exec-form HEALTHCHECK in the image ({test}): built without --format docker?")
    volumes = set(config.get("Volumes") or {})
    if not {"/models", "/adapters", "/hf-cache"} <= volumes:
        fail(f"volumes {sorted(volumes)}")
    if "8000/tcp" not in (config.get("ExposedPorts") or {}) or config.get("StopSignal") != "SIGTERM":
        fail(f"ports {config.get('ExposedPorts')}, stop signal {config.get('StopSignal')}")
    command = (config.get("Entrypoint") or []) + (config.get("Cmd") or [])
    say(
        f"config: USER {user}, ENTRYPOINT+CMD {command}, volumes {sorted(volumes)}, HEALTHCHECK {test[1:3]}..."
    )


# ------------------------------------------------------------------ 2. nothing of the build machine


def certificate_needles(bundle: Path) -> list[bytes]:
    """One line of each certificate in ``bundle`` that no public bundle has: the build machine's
    own CAs. (The public ones may well be in the image: Debian's ca-certificates comes with its
    python3-venv, and pip carries certifi's.)"""
    public = b"".join(path.read_bytes() for path in Path("/usr/share/ca-certificates").rglob("*.crt"))
    try:
        from pip._vendor import certifi  # type: ignore[import-not-found]

        public += Path(certifi.where()).read_bytes()
    except Exception:  # noqa: BLE001 - no pip here: Debian's set alone
        pass
    blocks = re.findall(
        rb"-----BEGIN CERTIFICATE-----\n(.*?)-----END CERTIFICATE-----", bundle.read_bytes(), re.S
    )
    needles = []
    for block in blocks:
        lines = [line for line in block.split(b"\n") if len(line) == 64]
        if len(lines) > 4 and lines[len(lines) // 2] not in public:
            needles.append(lines[len(lines) // 2])
    return needles


FORBIDDEN_NAMES = re.compile(
    r"(^|/)(pip\.conf|pip\.ini|\.pip|\.config/pip|etc/xdg/pip|find-links-\d+|ca\.crt)(/|$)"
)


def check_no_build_machine(
    image: str, config: dict, history: list[dict], forbid: list[str], files: list[Path]
) -> None:
    needles = [s.encode() for s in forbid if s]
    local_cas = 0
    for f in files:
        cas = certificate_needles(f)
        needles += cas
        local_cas += len(cas)
    shown = [s.decode(errors="replace")[:40] for s in needles]
    texts = [json.dumps(config)] + [h.get("created_by", "") + " " + h.get("comment", "") for h in history]
    for text in texts:
        for needle in needles:
            if needle.decode(errors="replace") in text:
                fail(f"the image's history or configuration holds {needle[:60]!r}: {text[:300]}")
    say(f"history ({len(history)} steps) and configuration: none of {len(needles)} build-machine strings")

    # Files the build copies from the repository as they are (COPY, pip install .) may hold such a
    # string of their own (demo/base/recipe.json records where the demo was trained): noted, not
    # failed, when byte-identical to the repository's file.
    files_shipped = [p for top in ("adapters", "server", "training", "demo") for p in (REPO / top).rglob("*")]
    files_shipped = [p for p in files_shipped if p.is_file() and p.stat().st_size]
    shipped_sizes = {p.stat().st_size for p in files_shipped}
    shipped_hashes = {hashlib.sha256(p.read_bytes()).digest() for p in files_shipped}
    shipped: set[str] = set()
    notes: set[str] = set()
    t0 = time.monotonic()
    with tempfile.TemporaryDirectory(dir="/var/tmp", prefix="inputtune-layers.") as tmp:
        buildah("push", "--quiet", "--disable-compression", image, f"dir:{tmp}/image")
        manifest = json.loads(Path(tmp, "image", "manifest.json").read_text())
        layers = [Path(tmp, "image", layer["digest"].split(":")[1]) for layer in manifest["layers"]]
        total = 0
        for i, layer in enumerate(layers):
            total += layer.stat().st_size
            with tarfile.open(layer) as tar:
                for member in tar:
                    data = tar.extractfile(member) if member.size in shipped_sizes else None
                    if data is not None and hashlib.sha256(data.read()).digest() in shipped_hashes:
                        shipped.add(member.name)
                    if FORBIDDEN_NAMES.search(member.name.lstrip("./")):
                        fail(f"layer {i} holds {member.name}: pip settings or a build mount")
                    for s in forbid:
                        if s.startswith("/") and ("/" + member.name.lstrip("./")).startswith(
                            s.rstrip("/") + "/"
                        ):
                            fail(f"layer {i} holds {member.name}: a build-machine path")
            if scan(layer, needles) is not None:
                for name, needle in locate(layer, needles):
                    if name not in shipped:
                        fail(f"layer {i} holds {needle[:60]!r} in {name}")
                    notes.add(f"{name} holds {needle.decode(errors='replace')[:40]!r}")
    say(
        f"{len(layers)} layers ({total / 1e9:.2f} GB uncompressed) read whole in {time.monotonic() - t0:.0f}s: "
        f"no pip settings and none of: {', '.join(shown[: len(shown) - local_cas])}, "
        f"the build machine's {local_cas} own CA certificate(s)"
    )
    for note in sorted(notes):
        say(f"note: {note}: a file of the repository, copied as it is (not the build's doing)")


def scan(path: Path, needles: list[bytes], chunk: int = 1 << 24) -> bytes | None:
    """The first needle found anywhere in the file (names and contents of a tar alike)."""
    overlap = max(len(n) for n in needles) - 1
    tail = b""
    with path.open("rb") as f:
        while block := f.read(chunk):
            data = tail + block
            for needle in needles:
                if needle in data:
                    return needle
            tail = data[-overlap:] if overlap > 0 else b""
    return None


def locate(layer: Path, needles: list[bytes]) -> list[tuple[str, bytes]]:
    """(file, needle) for each needle in each file's name or content."""
    found = []
    with tarfile.open(layer) as tar:
        for member in tar:
            data = b""
            if member.isfile() and (f := tar.extractfile(member)) is not None:
                data = f.read()
            found += [(member.name, n) for n in needles if n in member.name.encode() or n in data]
    return found or [("a tar header", needles[0])]


# ------------------------------------------------------------------ 3. the image run


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def children() -> dict[int, list[int]]:
    tree: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                stat = Path(f"/proc/{entry}/stat").read_text()
            except OSError:
                continue
            ppid = int(stat.rsplit(")", 1)[1].split()[1])
            tree.setdefault(ppid, []).append(int(entry))
    return tree


def cmdline(pid: int) -> list[str]:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().decode(errors="replace").split("\0")[:-1]
    except OSError:
        return []


class Container:
    """The image's ENTRYPOINT + CMD run with `buildah run` in a working container of the image."""

    def __init__(self, image: str, config: dict, env: dict[str, str], mounts: list[str], log: Path) -> None:
        self.config, self.env, self.log = config, env, log
        self.name = f"inputtune-check-{os.getpid()}-{secrets.token_hex(3)}"
        self.ctr = buildah("from", "--pull-never", "--name", self.name, image).strip()
        self.command = (config.get("Entrypoint") or []) + (config.get("Cmd") or [])
        args = ["buildah", "run", "--isolation", "chroot"]
        for name, value in env.items():
            args += ["--env", f"{name}={value}"]
        for mount in mounts:
            args += ["-v", mount]
        self.proc = subprocess.Popen(
            [*args, self.ctr, "--", *self.command], stdout=log.open("wb"), stderr=subprocess.STDOUT
        )
        self.url = f"http://127.0.0.1:{env['INPUTTUNE_PORT']}"
        self.pid: int | None = None

    def server_pid(self) -> int:
        """The server process inside: buildah's descendant running the entry command (under
        buildah-chroot-runtime and buildah-chroot-exec, which would not pass SIGTERM on)."""
        if self.pid is None:
            tree, todo = children(), [self.proc.pid]
            while todo:
                pid = todo.pop()
                args = cmdline(pid)
                runs = (
                    args
                    and not Path(args[0]).name.startswith("buildah")
                    and any(a.endswith(self.command[0]) for a in args[:2])
                )
                if runs and self.command[-1] in args:
                    self.pid = pid
                    break
                todo += tree.get(pid, [])
        if self.pid is None:
            fail(f"no process running {self.command} under buildah run")
        return self.pid

    def wait_ready(self, timeout: float = 240) -> dict:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                fail(
                    f"the container exited ({self.proc.returncode}) before /ready:\n{self.log.read_text()[-3000:]}"
                )
            try:
                with urllib.request.urlopen(self.url + "/ready", timeout=5) as r:
                    return json.loads(r.read())
            except (OSError, urllib.error.URLError):
                time.sleep(0.5)
        fail(f"/ready did not answer 200 within {timeout:.0f}s:\n{self.log.read_text()[-3000:]}")
        raise AssertionError

    def request(
        self, method: str, path: str, body: bytes | None = None, headers: dict | None = None
    ) -> tuple[int, bytes]:
        req = urllib.request.Request(self.url + path, data=body, method=method, headers=headers or {})
        try:
            with urllib.request.urlopen(req, timeout=120) as r:
                return r.status, r.read()
        except urllib.error.HTTPError as e:
            return e.code, e.read()

    def generate(self, adapter: str) -> str:
        body = json.dumps({"inputs": FR, "parameters": {"max_new_tokens": 12}}).encode()
        status, answer = self.request(
            "POST", f"/generate?adapter={adapter}", body, {"Content-Type": "application/json"}
        )
        if status != 200:
            fail(f"POST /generate?adapter={adapter}: {status} {answer[:300]!r}")
        text = json.loads(answer)["generated_text"]
        if not text.strip():
            fail(f"{adapter}: empty generated_text")
        return text

    def check_user(self) -> str:
        pid = self.server_pid()
        status = Path(f"/proc/{pid}/status").read_text()
        uids = re.search(r"^Uid:\s+(.*)$", status, re.M).group(1).split()  # type: ignore[union-attr]
        gids = re.search(r"^Gid:\s+(.*)$", status, re.M).group(1).split()  # type: ignore[union-attr]
        want_uid, _, want_gid = self.config["User"].partition(":")
        if set(uids) != {want_uid} or (want_gid and set(gids) != {want_gid}):
            fail(f"the server runs as uid {uids} gid {gids}, not the image's USER {self.config['User']}")
        return f"uid {uids[0]} gid {gids[0]}"

    def healthcheck(self) -> None:
        """The image's HEALTHCHECK command, run inside the same container as Docker runs it."""
        test = self.config["Healthcheck"]["Test"][1:]
        done = subprocess.run(
            [
                "buildah",
                "run",
                "--isolation",
                "chroot",
                "--env",
                f"INPUTTUNE_PORT={self.env['INPUTTUNE_PORT']}",
                self.ctr,
                "--",
                *test,
            ],
            capture_output=True,
            text=True,
            timeout=60,
        )
        if done.returncode:
            fail(f"HEALTHCHECK exited {done.returncode}: {done.stderr[-500:]}")

    def stop(self) -> float:
        drain = float(self.env.get("INPUTTUNE_DRAIN_TIMEOUT_S") or "30")
        t0 = time.monotonic()
        os.kill(self.server_pid(), signal.SIGTERM)
        try:
            code = self.proc.wait(drain)
        except subprocess.TimeoutExpired:
            fail(f"SIGTERM: still running after the drain timeout ({drain:.0f}s)")
        if code != 0:
            fail(f"SIGTERM: exit code {code}:\n{self.log.read_text()[-2000:]}")
        return time.monotonic() - t0

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        subprocess.run(["buildah", "rm", self.ctr], capture_output=True)


def run_checks(image: str, config: dict, work: Path) -> None:
    env_image = dict(e.split("=", 1) for e in config.get("Env") or [])
    base_env = {"INPUTTUNE_HOST": "127.0.0.1"}

    # a. the image's defaults: the embedded demo
    t0 = time.monotonic()
    c = Container(image, config, {**base_env, "INPUTTUNE_PORT": str(free_port())}, [], work / "demo.log")
    try:
        ready = c.wait_ready()
        started = time.monotonic() - t0
        text = c.generate("fr-en")
        user = c.check_user()
        c.healthcheck()
        c.env["INPUTTUNE_DRAIN_TIMEOUT_S"] = env_image.get("INPUTTUNE_DRAIN_TIMEOUT_S", "30")
        stopped = c.stop()
    finally:
        c.close()
    say(
        f"the demo: /ready 200 in {started:.0f}s (model {ready.get('model', '?')}), fr-en -> {text.strip()!r}, "
        f"HEALTHCHECK passes, runs as {user}, SIGTERM: exit 0 in {stopped:.1f}s"
    )

    # b. compose's settings: the adapter volume and the admin key as a secret file
    key = secrets.token_hex(16)
    key_file = work / "admin_key"
    key_file.write_text(key + "\n")
    uid, _, gid = config["User"].partition(":")
    os.chown(key_file, int(uid), int(gid or uid))
    key_file.chmod(0o400)
    env = {
        **base_env,
        "INPUTTUNE_PORT": str(free_port()),
        "INPUTTUNE_ADAPTER_DIR": "/adapters",
        "INPUTTUNE_ADMIN_API_KEY_FILE": "/run/secrets/admin_key",
    }
    c = Container(image, config, env, [f"{key_file}:/run/secrets/admin_key:ro"], work / "upload.log")
    try:
        c.wait_ready()
        data = UPLOAD.read_bytes()
        status, answer = c.request(
            "PUT", "/adapters/uploaded", data, {"Content-Type": "application/octet-stream"}
        )
        if status not in (401, 403):
            fail(f"PUT without the admin key: {status} {answer[:200]!r}, expected 401/403")
        status, answer = c.request(
            "PUT",
            "/adapters/uploaded",
            data,
            {"Content-Type": "application/octet-stream", "Authorization": f"Bearer {key}"},
        )
        if status != 201:
            fail(f"PUT /adapters/uploaded with the admin key: {status} {answer[:300]!r}")
        stored = Path(f"/proc/{c.server_pid()}/root/adapters/uploaded.safetensors")
        if not stored.is_file() or stored.stat().st_size != len(data):
            fail(f"the upload is not in the container's /adapters ({stored})")
        owner = f"{stored.stat().st_uid}:{stored.stat().st_gid}"
        if stored.stat().st_uid != int(uid):
            fail(f"the upload is owned by {owner}, not the image's user {config['User']}")
        text = c.generate("uploaded")
        c.env["INPUTTUNE_DRAIN_TIMEOUT_S"] = env_image.get("INPUTTUNE_DRAIN_TIMEOUT_S", "30")
        stopped = c.stop()
    finally:
        c.close()
    say(
        f"uploads: refused without the key, 201 with it, stored as /adapters/uploaded.safetensors "
        f"(owner {owner}), serves ({text.strip()!r}); SIGTERM: exit 0 in {stopped:.1f}s"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("image")
    parser.add_argument(
        "--forbid", action="append", default=[], help="text that no layer or history may hold"
    )
    parser.add_argument(
        "--forbid-file", action="append", default=[], type=Path, help="a file (CA bundle) no layer may copy"
    )
    args = parser.parse_args()

    data = json.loads(buildah("inspect", "--type", "image", args.image))
    config, history = data["Docker"]["config"], data["Docker"].get("history") or []
    check_config(config)
    check_no_build_machine(args.image, config, history, args.forbid, args.forbid_file)
    t0 = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="inputtune-check.") as tmp:
        work = Path(tmp)
        work.chmod(0o755)
        run_checks(args.image, config, work)
    say(f"the image ran and passed in {time.monotonic() - t0:.0f}s")


if __name__ == "__main__":
    sys.exit(main())
