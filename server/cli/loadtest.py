"""`inputtune loadtest`: open-loop load against a running server, with a report."""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from pathlib import Path

import httpx

from ..perf.errors import LoadTestError
from ..perf.loadtest.apis import APIS
from ..perf.loadtest.client import run_load, verify
from ..perf.loadtest.plan import LoadSpec
from ..perf.loadtest.sweep import plot, sweep
from ..perf.stats import format_report, summarize
from ..perf.workload import make_inputs
from .errors import EXIT_FAILED, EXIT_OK


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--url", default="http://127.0.0.1:8000", help="server to load (loopback by default)")
    p.add_argument("--rate", type=float, default=5.0, help="offered requests per second")
    p.add_argument("--duration", type=float, default=20.0, help="seconds of arrivals")
    p.add_argument("--requests", type=int, help="stop after this many requests (whichever comes first)")
    p.add_argument(
        "--adapters",
        default="all",
        help="comma-separated names ('_base' = no adapter), a number N "
        "(the server's first N adapters), or 'all'",
    )
    p.add_argument(
        "--zipf", type=float, default=1.0, help="Zipf exponent of adapter popularity (0 = uniform)"
    )
    p.add_argument("--inputs-file", help="text file, one input per line")
    p.add_argument("--task", help="draw inputs from a task's dev sources (e.g. e2e, fr-en)")
    p.add_argument("--data-dir", help="data folder for --task (default ../shared/data)")
    p.add_argument("--fixed-rate", action="store_true", help="evenly spaced arrivals instead of Poisson")
    p.add_argument("--max-new-tokens", type=int, default=16)
    p.add_argument("--min-new-tokens", type=int, default=0, help="set = max to make every request equal work")
    p.add_argument("--num-beams", type=int, default=1)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--timeout", type=float, default=120.0, help="per-request timeout (s)")
    p.add_argument(
        "--sweep", action="store_true", help="run several rates (doubling from --rate until saturated)"
    )
    p.add_argument("--rates", help="comma-separated rates for --sweep")
    p.add_argument("--plot-dir", default=".", help="where --sweep writes its PNG plots")
    p.add_argument(
        "--verify",
        type=int,
        default=0,
        metavar="N",
        help="afterwards re-send N answered requests alone and require identical text (greedy)",
    )
    p.add_argument(
        "--api",
        choices=APIS,
        default="native",
        help="front end: native (/generate), tgi (POST / with adapter_id), openai (/v1/completions)",
    )
    p.add_argument(
        "--stream", action="store_true", help="streamed answers: also time to first token and between tokens"
    )
    p.add_argument("--json", action="store_true", help="print JSON instead of the text report")
    p.add_argument("--no-progress", action="store_true")


def resolve_adapters(url: str, value: str) -> list[str | None]:
    if value not in ("all",) and not value.isdigit():
        return [None if n == "_base" else n for n in value.split(",") if n]
    try:
        names = [a["name"] for a in httpx.get(url + "/adapters", timeout=30).json()]
    except (httpx.HTTPError, ValueError) as e:
        raise LoadTestError(f"could not list adapters at {url}/adapters: {e}") from e
    if not names:
        raise LoadTestError(
            f"the server at {url} has no adapters; pass --adapters _base to load the base model"
        )
    return names if value == "all" else names[: int(value)]


def base_model_id(url: str) -> str:
    """The served base model's id (the model without a parent on GET /v1/models)."""
    try:
        models = httpx.get(url + "/v1/models", timeout=30).json()["data"]
        return next(m["id"] for m in models if m.get("parent") is None)
    except (httpx.HTTPError, ValueError, KeyError, StopIteration) as e:
        raise LoadTestError(f"could not find the base model's id at {url}/v1/models: {e}") from e


def load_inputs(args: argparse.Namespace) -> list[str]:
    if args.inputs_file:
        lines = [line.strip() for line in Path(args.inputs_file).read_text().splitlines() if line.strip()]
        if not lines:
            raise LoadTestError(f"{args.inputs_file} has no non-empty lines")
        return lines
    if args.task:
        from training.data import load_task

        return [item.source for item in load_task(args.task, "dev", args.data_dir).items]
    return make_inputs(256, 96, seed=args.seed)


def run(args: argparse.Namespace) -> int:
    params = {
        "max_new_tokens": args.max_new_tokens,
        "min_new_tokens": args.min_new_tokens,
        "num_beams": args.num_beams,
    }
    spec = LoadSpec(
        url=args.url,
        rate=args.rate,
        duration_s=args.duration,
        max_requests=args.requests,
        adapters=resolve_adapters(args.url, args.adapters),
        zipf_a=args.zipf,
        inputs=load_inputs(args),
        parameters=params,
        poisson=not args.fixed_rate,
        seed=args.seed,
        timeout_s=args.timeout,
        api=args.api,
        stream=args.stream,
        base_id=base_model_id(args.url) if args.api == "openai" else None,
    )
    log = (lambda msg: print(msg, file=sys.stderr)) if args.json else print
    if args.sweep:
        rates = [float(r) for r in args.rates.split(",")] if args.rates else None
        results = sweep(spec, rates, progress=not args.no_progress, log=log)
        plots = plot(results, Path(args.plot_dir), f"{len(spec.adapters)} adapters, zipf {spec.zipf_a:g}")
        if args.json:
            print(json.dumps({"runs": results, "plots": [str(p) for p in plots]}))
        else:
            for summary in results:
                print(format_report(summary), end="\n\n")
            print("plots: " + ", ".join(str(p) for p in plots))
        return EXIT_OK
    outcomes = asyncio.run(run_load(spec, progress=not args.no_progress))
    summary = summarize(outcomes, args.rate)
    if args.verify:
        summary["verify_problems"] = asyncio.run(verify(spec, outcomes, args.verify))
        summary["verified"] = args.verify
    print(json.dumps(summary) if args.json else format_report(summary))
    if args.verify and not args.json:
        problems = summary["verify_problems"]
        print(
            f"verify        re-sent {min(args.verify, summary['ok'])} answered requests alone: "
            + ("all identical" if not problems else f"{len(problems)} differ: {problems[:3]}")
        )
    if args.verify and summary["verify_problems"]:
        print(
            f"{len(summary['verify_problems'])} answers differ from the same request sent alone",
            file=sys.stderr,
        )
        return EXIT_FAILED
    return EXIT_OK if not summary["mismatches"] else EXIT_FAILED
