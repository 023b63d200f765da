"""The README's "Use it from your code" snippets, run as they are against the embedded demo."""

from __future__ import annotations

import contextlib
import io
import re
from pathlib import Path

import pytest

from server.demo import DEMO_DIR
from server.settings import ServerSettings
from tests.server.conftest import LiveServer

README = Path(__file__).resolve().parents[3] / "README.md"


def snippets() -> list[str]:
    section = README.read_text().split("### Use it from your code", 1)[1].split("\n## ", 1)[0]
    return re.findall(r"```python\n(.*?)```", section, re.S)


def test_the_readme_has_the_snippets():
    found = snippets()
    assert len(found) == 2 and "from openai import OpenAI" in found[0] and "InferenceClient" in found[1]


@pytest.mark.skipif(
    not (DEMO_DIR / "base" / "config.json").is_file(), reason="the demo is not in this checkout"
)
@pytest.mark.parametrize("index", [0, 1])
def test_snippet_runs_against_the_demo(index):
    settings = ServerSettings(device="cpu", port=0, drain_timeout_s=10)
    with LiveServer(settings) as server:
        code = snippets()[index].replace("http://127.0.0.1:8000", server.url)
        printed = io.StringIO()
        with contextlib.redirect_stdout(printed):
            exec(compile(code, f"README snippet {index}", "exec"), {})
    lines = printed.getvalue().splitlines()
    assert len(lines) == 2 and lines[0].split(" length")[0].split(" eos_token")[0].strip() == lines[1].strip()
    assert len(lines[1].split()) >= 3  # the demo's fr-en adapter writes an English sentence
