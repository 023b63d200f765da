"""`inputtune bench frontends`: streaming and the front ends, measured over HTTP on the embedded demo.

Starts one `inputtune serve` of the demo (or --model/--adapter-dir), then:
- a streamed answer of exactly 64 tokens, one request a second: time to the first token against the
  whole answer, and the time between tokens;
- every front end (native /generate, TGI's POST /, OpenAI's /v1/completions), whole and streamed,
  at a fixed rate, in alternating rounds (medians), so their overheads compare within one run.
Writes docs/perf/frontends.json and rewrites docs/performance.md from the saved results.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime
import json
import os
import statistics
from dataclasses import replace
from pathlib import Path

import httpx

from ..errors import LoadTestError
from ..loadtest.apis import APIS
from ..loadtest.client import run_load
from ..loadtest.plan import LoadSpec
from ..stats import summarize
from ..workload import make_inputs
from .report import INPUTTUNE, Server, write_report


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--out", default="docs/performance.md")
    parser.add_argument("--model", help="base folder; default: the embedded demo")
    parser.add_argument("--adapter-dir", help="adapter folder (with --model)")
    parser.add_argument("--adapters", default="fr-en,de-en,e2e,dart", help="adapters to draw from")
    parser.add_argument(
        "--data-dir", help="data folder: inputs from the fr-en dev set (default ../shared/data)"
    )
    parser.add_argument(
        "--synthetic-inputs",
        action="store_true",
        help="random word-salad inputs instead of the fr-en dev set (where the data is not on the machine)",
    )
    parser.add_argument("--rate", type=float, default=8.0, help="req/s of the front-end comparison")
    parser.add_argument("--duration", type=float, default=15.0, help="seconds per measurement")
    parser.add_argument("--new-tokens", type=int, default=16, help="tokens per answer in the comparison")
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--stream-requests", type=int, default=30, help="64-token streams, one a second")


def _inputs(data_dir: str | None, synthetic: bool) -> list[str]:
    """The fr-en dev sources, or, asked for by name, synthetic inputs (never in silence)."""
    if synthetic:
        return make_inputs(256, 96, seed=1)
    from training.data import load_task
    from training.errors import DataNotFoundError

    try:
        return [item.source for item in load_task("fr-en", "dev", data_dir).items]
    except DataNotFoundError as e:
        raise LoadTestError(f"{e}\n(or run on synthetic inputs with --synthetic-inputs)") from e


def _server_ttft_ms(url: str) -> float | None:
    sums = {}
    for line in httpx.get(url + "/metrics").text.splitlines():
        for key in ("sum", "count"):
            if line.startswith(f"inputtune_time_to_first_token_seconds_{key} "):
                sums[key] = float(line.split()[-1])
    return 1000 * sums["sum"] / sums["count"] if sums.get("count") else None


def run(args: argparse.Namespace) -> int:
    from ...demo import DEMO_DIR

    base = Path(args.model) if args.model else DEMO_DIR / "base"
    adapter_dir = Path(args.adapter_dir) if args.adapter_dir else DEMO_DIR / "adapters"
    out = Path(args.out)
    log = Path("runs/frontends.log")
    log.parent.mkdir(parents=True, exist_ok=True)
    adapters: list[str | None] = list(args.adapters.split(","))
    spec = LoadSpec(
        "",
        rate=args.rate,
        duration_s=args.duration,
        adapters=adapters,
        zipf_a=0.0,
        inputs=_inputs(args.data_dir, args.synthetic_inputs),
        seed=3,
    )
    with Server(INPUTTUNE, base, adapter_dir, 16, 32, log) as server:
        spec = replace(spec, url=server.url)
        asyncio.run(
            run_load(replace(spec, rate=4.0, duration_s=0, max_requests=8), progress=False)
        )  # warm-up
        ids = httpx.get(server.url + "/v1/models").json()["data"]
        base_id = next(m["id"] for m in ids if m.get("parent") is None)
        sixty_four = {"max_new_tokens": 64, "min_new_tokens": 64}
        stream_spec = replace(
            spec,
            rate=1.0,
            duration_s=0,
            max_requests=args.stream_requests,
            poisson=False,
            stream=True,
            parameters=sixty_four,
        )
        print(f"{args.stream_requests} streamed 64-token answers, one a second")
        stream_64 = summarize(asyncio.run(run_load(stream_spec, progress=False)), 1.0)
        server_ttft = _server_ttft_ms(server.url)
        print(
            f"  first token p50 {stream_64['ttft_ms']['p50']} ms, whole p50 {stream_64['latency_ms']['p50']} ms"
        )
        tokens = {"max_new_tokens": args.new_tokens, "min_new_tokens": args.new_tokens}
        runs: dict[tuple[str, bool], list[dict]] = {}
        for round_ in range(args.rounds):
            for api in APIS if round_ % 2 == 0 else APIS[::-1]:  # alternate the order across rounds
                for stream in (False, True):
                    one = replace(
                        spec, api=api, stream=stream, parameters=tokens, seed=round_, base_id=base_id
                    )
                    summary = summarize(asyncio.run(run_load(one, progress=False)), args.rate)
                    runs.setdefault((api, stream), []).append(summary)
                    print(
                        f"  {api:7s} {'streamed' if stream else 'whole':8s} p50 {summary['latency_ms']['p50']} ms"
                    )
    frontends = []
    for (api, stream), summaries in runs.items():
        frontends.append(
            {
                "api": api,
                "stream": stream,
                "requests": sum(s["requests"] for s in summaries),
                "ok": sum(s["ok"] for s in summaries),
                "p50_ms": statistics.median(s["latency_ms"]["p50"] for s in summaries),
                "p99_ms": statistics.median(s["latency_ms"]["p99"] for s in summaries),
                "ttft_p50_ms": statistics.median(s["ttft_ms"]["p50"] for s in summaries) if stream else None,
                "runs": summaries,
            }
        )
    result = {
        "date": datetime.date.today().isoformat(),
        "cpu_threads": os.cpu_count(),
        "model": str(base),
        "adapters": args.adapters.split(","),
        "max_wait_ms": 10.0,  # the benchmark servers' setting (report.Server)
        "rate": args.rate,
        "duration_s": args.duration,
        "new_tokens": args.new_tokens,
        "rounds": args.rounds,
        "stream_64": stream_64,
        "server_ttft_ms": server_ttft,
        "frontends": sorted(frontends, key=lambda r: (APIS.index(r["api"]), r["stream"])),
    }
    (out.parent / "perf" / "frontends.json").write_text(json.dumps(result, indent=1))
    write_report(out)
    print(f"wrote {out}")
    return 0
