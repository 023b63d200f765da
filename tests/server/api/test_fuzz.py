"""schemathesis over the live server's /openapi.json, every check, bounded (a couple of minutes).

The schema says what the server enforces (its caps, the one-value fields TGI clients send, the
beam-search rules, the chat route's one user message), so every check passes: no 500, no schema-valid
request refused, no schema-invalid request accepted, every answer in its documented shape and type.
A longer run: docs/reliability.md.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import schemathesis  # noqa: F401  (a dev dependency: the CLI below is its)

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[2]
MAX_EXAMPLES = int(os.environ.get("INPUTTUNE_FUZZ_EXAMPLES", "100"))  # ~40 s; the long run: 500


def test_schemathesis_finds_nothing(live):
    with live(
        admin_api_key="fuzz-admin-key", max_new_tokens=16, default_max_new_tokens=8, max_input_tokens=64
    ) as server:
        command = [
            str(Path(sys.executable).parent / "schemathesis"),
            "--config-file",
            str(HERE / "schemathesis.toml"),
            "run",
            f"{server.url}/openapi.json",
            "--checks",
            "all",
            "--max-examples",
            str(MAX_EXAMPLES),
            "--seed",
            "1",
            "--workers",
            "1",
            "--header",
            "Authorization: Bearer fuzz-admin-key",
        ]
        done = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=600)
    failures = done.stdout.find("FAILURES")  # from the first failure on (a failing case can be long)
    report = done.stdout[failures if failures >= 0 else -6000 :][:30000] + done.stderr[-2000:]
    print(report)
    assert done.returncode == 0, report
    assert "API Operations" in report
