"""The layout's rules, read from the source: which folder may import what, and no import cycle.

Floors, lowest first (docs/architecture.md draws them):
  adapters/   the method and the inference runtime: imports no other floor, no web, no asyncio
  training/   imports adapters/, never server/
  server/     the serving process (app, api, engine) imports adapters/ only; its CLI may import
              training/ and server/perf/; server/perf/ (load tester, benchmarks, the naive
              baseline) are clients of the server: only the CLI imports them
Every import counts, the ones inside functions too.
"""

from __future__ import annotations

import ast
import tomllib
from collections import defaultdict
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("adapters", "server", "training")
WEB = ("fastapi", "starlette", "uvicorn", "httpx", "asyncio", "sse_starlette")


def modules() -> dict[str, Path]:
    """Dotted module name -> file, for every module of the three packages."""
    found = {}
    for package in PACKAGES:
        for path in sorted((ROOT / package).rglob("*.py")):
            parts = path.relative_to(ROOT).with_suffix("").parts
            name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
            found[name] = path
    return found


def imports(name: str, path: Path, top_level_only: bool = False) -> list[tuple[str, int]]:
    """(imported module, line) of every import in a file; relative imports made absolute."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    nodes = tree.body if top_level_only else list(ast.walk(tree))
    found = []
    for node in nodes:
        if isinstance(node, ast.Import):
            found += [(alias.name, node.lineno) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[: len(base) - node.level + 1]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            found.append((target, node.lineno))
            # `from .x import y` may name a submodule y
            found += [(f"{target}.{alias.name}", node.lineno) for alias in node.names]
    return found


def forbidden(importer: str, imported: str) -> str | None:
    """Why ``importer`` may not import ``imported`` (None when it may)."""
    top = imported.split(".")[0]
    if importer.startswith("adapters"):
        if top in ("server", "training"):
            return "adapters/ is the lowest floor"
        if top in WEB:
            return "adapters/ has no web and no asyncio"
    if importer.startswith("training") and top == "server":
        return "training/ never imports server/"
    if imported.startswith("server.perf") and not importer.startswith(("server.perf", "server.cli")):
        return "server/perf/ holds clients of the server: only the CLI imports them"
    if importer.startswith("server") and not importer.startswith(("server.cli", "server.perf")):
        if top == "training":
            return "the serving process never imports training/ (only the CLI does)"
        if imported.startswith("server.cli"):
            return "the serving process never imports the CLI"
    return None


def test_every_import_respects_the_floors():
    problems = []
    for name, path in modules().items():
        for imported, line in imports(name, path):
            why = forbidden(name, imported)
            if why:
                problems.append(f"{path.relative_to(ROOT)}:{line} imports {imported}: {why}")
    assert not problems, "\n".join(problems)


def test_the_rule_has_teeth():
    assert forbidden("adapters.model", "server.engine.engine")
    assert forbidden("adapters.decoding.continuous", "asyncio")
    assert forbidden("training.trainer", "server.settings")
    assert forbidden("server.engine.worker", "server.perf.naive")
    assert forbidden("server.api.routes", "training.data")
    assert forbidden("server.app", "server.cli.main")
    assert forbidden("server.cli.bench", "training.bench") is None
    assert forbidden("server.cli.loadtest", "server.perf.stats") is None


def test_no_import_cycle():
    """Module-level imports form no cycle (a cycle makes import order matter)."""
    known = modules()
    graph: dict[str, set[str]] = defaultdict(set)
    for name, path in known.items():
        for imported, _ in imports(name, path, top_level_only=True):
            if imported in known and imported != name:
                graph[name].add(imported)
    state: dict[str, int] = {}  # 1 visiting, 2 done
    stack: list[str] = []

    def visit(node: str) -> None:
        state[node] = 1
        stack.append(node)
        for nxt in sorted(graph[node]):
            if state.get(nxt) == 1:
                cycle = stack[stack.index(nxt) :] + [nxt]
                pytest.fail("import cycle: " + " -> ".join(cycle))
            if nxt not in state:
                visit(nxt)
        stack.pop()
        state[node] = 2

    for node in sorted(known):
        if node not in state:
            visit(node)


def test_every_package_is_installed():
    """A non-editable install holds every package folder (pyproject lists them by hand, because the
    demo is installed under another name than its folder)."""
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]
    listed = set(config["packages"])
    folders = {
        ".".join(p.parent.relative_to(ROOT).parts)
        for pkg in PACKAGES
        for p in (ROOT / pkg).rglob("__init__.py")
    }
    assert folders - listed == set(), "add these packages to [tool.setuptools] packages in pyproject.toml"
    assert config["package-dir"]["inputtune_demo"] == "demo" and "inputtune_demo" in listed
