"""Part 4's serving cost: generation throughput of ``inputtune serve`` per adapter kind and prompt length.

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

import asyncio
import json
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx

from adapters import AdapterConfig, load_base, random_adapter, to_bytes
from server.perf.bench.report import INPUTTUNE, Server
from training.study.runs import PROMPT_LENGTHS
from training.study.tasks import load_study_task

KINDS = {"it": "input-tuning", "pt": "prompt-tuning"}


def adapter_grid() -> list[tuple[str, int]]:
    """(method, prompt length) for every part-4 setting, the default length 20 included."""
    return sorted({(m, n) for m, lens in PROMPT_LENGTHS.items() for n in (*lens, 20)})


async def _burst(url: str, name: str, sources: list[str], new_tokens: int) -> tuple[float, int]:
    body = {"parameters": {"max_new_tokens": new_tokens, "min_new_tokens": new_tokens}}
    async with httpx.AsyncClient(base_url=url, timeout=300) as client:
        started = time.perf_counter()
        responses = await asyncio.gather(
            *(client.post(f"/generate?adapter={name}", json={"inputs": s, **body}) for s in sources)
        )
        seconds = time.perf_counter() - started
    for r in responses:
        if r.status_code != 200:
            raise RuntimeError(f"adapter {name}: HTTP {r.status_code}: {r.text[:200]}")
    return seconds, new_tokens * len(sources)


def measure(
    model: str,
    out: Path,
    data_dir: str | None = None,
    rows: int = 32,
    new_tokens: int = 32,
    repeats: int = 3,
) -> dict[str, Any]:
    """Measure every setting of ``adapter_grid`` and write ``out`` (JSON)."""
    base = load_base(model, device="cpu")
    sources = [item.source for item in load_study_task("e2e", data_dir, rows).test]
    grid = adapter_grid()
    names = {key: f"{key[0]}-p{key[1]}" for key in grid}
    times: dict[tuple[str, int], dict[int, list[float]]] = {key: {1: [], rows: []} for key in grid}
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        for (method, length), name in names.items():
            config = AdapterConfig(
                KINDS[method], base.d_model, length, base_model=base.name, base_fingerprint=base.fingerprint
            )
            (folder / f"{name}.safetensors").write_bytes(to_bytes(random_adapter(config, seed=length)))
        log = out.with_suffix(".server.log")
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
                print(f"prompt-length throughput: repeat {repeat + 1}/{repeats} done", flush=True)
        log.unlink(missing_ok=True)
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
        "command": f"python -m training.study throughput --rows {rows} --new-tokens {new_tokens} --repeats {repeats}",
        "measured": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }
    out.write_text(json.dumps(record, indent=1) + "\n")
    return record
