"""`inputtune serve` as a real process: start-up line, SIGTERM with requests in flight, exit 0."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import threading
import time

import httpx


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_sigterm_finishes_in_flight_requests_and_exits_zero(model_dir, adapter_dir):
    port = free_port()
    env = dict(os.environ, INPUTTUNE_MAX_WAIT_MS="50", INPUTTUNE_MAX_BATCH_SIZE="4")
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "server.cli",
            "serve",
            "--model",
            str(model_dir / "base"),
            "--adapter-dir",
            str(adapter_dir),
            "--port",
            str(port),
            "--device",
            "cpu",
            "--drain-timeout-s",
            "60",
        ],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            assert proc.poll() is None, proc.stdout.read()
            try:
                if httpx.get(url + "/ready").status_code == 200:
                    break
            except httpx.TransportError:
                pass
            assert time.monotonic() < deadline, "server never became ready"
            time.sleep(0.1)
        results: list[int] = []

        def call(i: int) -> None:
            r = httpx.post(
                url + "/generate",
                params={"adapter": "e2e"},
                timeout=180,
                json={
                    "inputs": f"request {i} " * 8,
                    "parameters": {"max_new_tokens": 200, "min_new_tokens": 200},
                },
            )
            results.append(r.status_code)

        threads = [threading.Thread(target=call, args=(i,)) for i in range(12)]
        for t in threads:
            t.start()
        time.sleep(0.5)  # requests are queued or running
        proc.send_signal(signal.SIGTERM)
        for t in threads:
            t.join(180)
        code = proc.wait(60)
        output = proc.stdout.read()
    finally:
        if proc.poll() is None:
            proc.kill()
    assert results == [200] * 12, (results, output[-2000:])
    assert code == 0, output[-2000:]
    assert "inputtune serving" in output and "adapters in" in output and url in output
