"""`inputtune bench prompt-lengths`: generation throughput of ``inputtune serve`` per adapter kind and
prompt length (the study's part 4, docs/study.md).

The soft prompt is most of what an adapter costs at serving time: every prompt vector is one more
encoder position for the row and one more key for every decoder step's cross-attention. This starts
the server (continuous batching, mixed adapters, the base given) with one adapter per (method, prompt
length) and, for each, sends ``rows`` concurrent requests of E2E test inputs that all generate exactly
``new_tokens`` tokens (``min_new_tokens`` = ``max_new_tokens``, so every adapter does the same decoding
work whatever its weights). The adapters' weights are random: with the token count fixed, throughput
does not depend on them, and the measurement needs no trained run. Adapters alternate within each
repeat; the median over repeats is reported, with 1 row (latency) and ``rows`` rows (throughput).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx

from adapters import AdapterConfig, load_base, random_adapter, to_bytes

from ..errors import LoadTestError
from .engines import e2e_sources
from .report import INPUTTUNE, Server

KINDS = {"it": "input-tuning", "pt": "prompt-tuning"}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--model", help="base folder (default: the embedded demo base)")
    parser.add_argument("--data-dir", help="data folder with e2e/ (default: ../shared/data)")
    parser.add_argument("--lengths", default="0,5,20,100", help="prompt lengths (prompt-tuning skips 0)")
    parser.add_argument("--rows", type=int, default=32, help="concurrent requests per burst")
    parser.add_argument("--new-tokens", type=int, default=32, help="tokens every request generates")
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--json", metavar="PATH", help="write the figures here as JSON")


def adapter_grid(lengths: list[int]) -> list[tuple[str, int]]:
    """(method, prompt length) for every setting: input-tuning at every length, prompt-tuning at every
    length but 0 (a prompt-tuning adapter with no prompt is the base itself)."""
    return sorted({(m, n) for m in KINDS for n in lengths if n > 0 or m == "it"})


async def _burst(url: str, name: str, sources: list[str], new_tokens: int) -> tuple[float, int]:
    body = {"parameters": {"max_new_tokens": new_tokens, "min_new_tokens": new_tokens, "details": True}}
    async with httpx.AsyncClient(base_url=url, timeout=300) as client:
        started = time.perf_counter()
        responses = await asyncio.gather(
            *(client.post(f"/generate?adapter={name}", json={"inputs": s, **body}) for s in sources)
        )
        seconds = time.perf_counter() - started
    for r in responses:
        if r.status_code != 200:
            raise LoadTestError(f"adapter {name}: HTTP {r.status_code}: {r.text[:200]}")
        generated = r.json()["details"]["generated_tokens"]
        if generated != new_tokens:  # the figures assume every request does the same work
            raise LoadTestError(f"adapter {name}: a request generated {generated} tokens, not {new_tokens}")
    return seconds, new_tokens * len(sources)


def measure(
    model: str,
    lengths: list[int],
    data_dir: str | None = None,
    rows: int = 32,
    new_tokens: int = 32,
    repeats: int = 7,
    log: Path | None = None,
) -> dict[str, Any]:
    """Measure every setting of ``adapter_grid(lengths)``; the server's log goes to ``log``."""
    base = load_base(model, device="cpu")
    sources = e2e_sources(data_dir, rows)
    grid = adapter_grid(lengths)
    names = {key: f"{key[0]}-p{key[1]}" for key in grid}
    times: dict[tuple[str, int], dict[int, list[float]]] = {key: {1: [], rows: []} for key in grid}
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        for (method, length), name in names.items():
            config = AdapterConfig(
                KINDS[method], base.d_model, length, base_model=base.name, base_fingerprint=base.fingerprint
            )
            (folder / f"{name}.safetensors").write_bytes(to_bytes(random_adapter(config, seed=length)))
        log = log or folder / "server.log"
        with Server(INPUTTUNE, Path(model), folder, len(grid), rows, log) as server:
            for name in names.values():  # warm: first loads and allocations stay out of the figures
                asyncio.run(_burst(server.url, name, sources[:4], 4))
            for repeat in range(repeats):
                order = grid if repeat % 2 == 0 else grid[::-1]
                for key in order:
                    for count in (1, rows):
                        seconds, tokens = asyncio.run(
                            _burst(server.url, names[key], sources[:count], new_tokens)
                        )
                        times[key][count].append(seconds)
                print(f"prompt lengths: repeat {repeat + 1}/{repeats} done", flush=True, file=sys.stderr)
    settings = []
    for method, length in grid:
        one, many = (
            statistics.median(times[(method, length)][1]),
            statistics.median(times[(method, length)][rows]),
        )
        settings.append(
            {
                "method": method,
                "prompt_length": length,
                "latency_1_row_s": round(one, 4),
                "tokens_per_s_1_row": round(new_tokens / one, 1),
                f"tokens_per_s_{rows}_rows": round(new_tokens * rows / many, 1),
                "seconds": {str(k): [round(x, 4) for x in v] for k, v in times[(method, length)].items()},
            }
        )
    record = {
        "model": str(model),
        "rows": rows,
        "new_tokens": new_tokens,
        "repeats": repeats,
        "input_tokens_mean": round(statistics.mean(len(base.tokenizer(s)["input_ids"]) for s in sources), 1),
        "settings": settings,
        "command": "inputtune bench prompt-lengths "
        f"--lengths {','.join(map(str, lengths))} --rows {rows} --new-tokens {new_tokens} --repeats {repeats}",
        "measured": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }
    return record


def run(args: argparse.Namespace) -> int:
    from server.demo import DEMO_DIR

    try:
        lengths = sorted({int(x) for x in args.lengths.split(",") if x.strip()})
    except ValueError:
        raise LoadTestError(
            f"--lengths takes whole numbers separated by commas, got {args.lengths!r}"
        ) from None
    if not lengths or min(lengths) < 0:
        raise LoadTestError(f"--lengths needs prompt lengths >= 0, got {args.lengths!r}")
    if args.rows < 1 or args.new_tokens < 1 or args.repeats < 1:
        raise LoadTestError("--rows, --new-tokens and --repeats must be at least 1")
    model = args.model or str(DEMO_DIR / "base")
    record = measure(model, lengths, args.data_dir, args.rows, args.new_tokens, args.repeats)
    rows_key = f"tokens_per_s_{args.rows}_rows"
    print(f"{'method':<14} {'prompt':>6} {'1 row ms':>9} {'tok/s 1':>8} {f'tok/s {args.rows}':>9}")
    for x in record["settings"]:
        print(
            f"{KINDS[x['method']]:<14} {x['prompt_length']:>6} {1000 * x['latency_1_row_s']:>9.0f} "
            f"{x['tokens_per_s_1_row']:>8.0f} {x[rows_key]:>9.0f}"
        )
    if args.json:
        Path(args.json).write_text(json.dumps(record, indent=1) + "\n")
        print(f"wrote {args.json}")
    return 0
