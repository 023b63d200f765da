"""`inputtune bench report`: regenerate docs/performance.md, measured end to end over HTTP.

On one machine and one random base (t5-small shape by default) it starts each server as a
real process and loads it with `inputtune loadtest`'s open-loop client:

  naive        one request at a time, plain transformers generate, adapter applied per request
  per-adapter  inputtune's server with static batches of one adapter each
  inputtune    continuous batching, rows of many adapters mixed in every step

with 1, 16, 200 and 2,000 distinct adapters (Zipf popularity), then latency at 50% and 80%
of inputtune's saturation, cold adapter loads, and a cache too small for its working set.
Every figure in the report comes from this run; GPU figures come from scripts/gpu_bench.sh.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, replace
from pathlib import Path

import httpx

from adapters import list_adapter_names, load_base
from adapters.testing import write_random_adapters

from ..loadtest.client import run_load
from ..loadtest.plan import LoadSpec
from ..loadtest.sweep import plot
from ..stats import summarize
from ..workload import make_inputs
from . import coldload


@dataclass(frozen=True)
class System:
    name: str
    command: str  # "serve" or "serve-naive"
    options: tuple[str, ...] = ()


NAIVE = System("naive", "serve-naive")
PER_ADAPTER = System("per-adapter", "serve", ("--scheduling", "static", "--batching", "per-adapter"))
INPUTTUNE = System("inputtune", "serve", ("--scheduling", "continuous", "--batching", "mixed"))


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Server:
    """A server process for one measurement."""

    def __init__(self, system: System, base: Path, adapters: Path, slots: int, batch: int, log: Path) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        cmd = [
            sys.executable,
            "-m",
            "server.cli",
            system.command,
            "--model",
            str(base),
            "--adapter-dir",
            str(adapters),
            "--device",
            "cpu",
            "--port",
            str(self.port),
        ]
        if system.command == "serve":
            cmd += [
                "--device-slots",
                str(slots),
                "--host-slots",
                str(max(4 * slots, 256)),
                "--max-batch-size",
                str(batch),
                "--max-queue",
                "256",
                "--max-wait-ms",
                "10",
                "--log-level",
                "warning",
                *system.options,
            ]
        self.log = log.open("a")
        self.proc = subprocess.Popen(cmd, stdout=self.log, stderr=subprocess.STDOUT)

    def __enter__(self) -> Server:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"server exited with {self.proc.returncode}; see {self.log.name}")
            try:
                if httpx.get(self.url + "/ready", timeout=2).status_code == 200:
                    return self
            except httpx.HTTPError:
                pass
            time.sleep(0.2)
        raise RuntimeError("server did not become ready in 120 s")

    def __exit__(self, *exc) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(60)
        except subprocess.TimeoutExpired:
            self.proc.kill()
        self.log.close()


def measure(url: str, spec: LoadSpec) -> dict:
    return summarize(asyncio.run(run_load(replace(spec, url=url), progress=False)), spec.rate)


def warm(url: str, spec: LoadSpec) -> None:
    """A few requests first, so one-time costs (allocations, first adapter loads) stay out of the figures."""
    measure(url, replace(spec, rate=4.0, duration_s=0, max_requests=8))


def adapter_names(folder: Path, count: int) -> list[str | None]:
    return list(list_adapter_names(folder)[:count]) or [None]


def device_slots_for(adapters: int) -> int:
    """The device tier a measurement with this many adapters gets: all of 16, else 64."""
    return 16 if adapters <= 16 else 64


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--out", default="docs/performance.md")
    parser.add_argument("--work-dir", default="runs/perf", help="base, adapters and server logs")
    parser.add_argument("--shape", default="t5-small", help="random base shape")
    parser.add_argument("--adapter-counts", default="1,16,200,2000")
    parser.add_argument("--duration", type=float, default=20.0, help="seconds of arrivals per measurement")
    parser.add_argument("--overload", type=float, default=40.0, help="offered req/s for saturation runs")
    parser.add_argument("--batch-size", type=int, default=32, help="server max_batch_size")
    parser.add_argument("--new-tokens", type=int, default=16)
    parser.add_argument("--input-chars", type=int, default=96)
    parser.add_argument("--prompt-length", type=int, default=16)
    parser.add_argument("--unloaded-requests", type=int, default=20)
    parser.add_argument("--keep-work", action="store_true")
    parser.add_argument(
        "--render-only", action="store_true", help="rewrite --out from the saved results, measuring nothing"
    )


def run(args: argparse.Namespace) -> int:
    if args.render_only:
        write_report(Path(args.out))
        print(f"wrote {args.out}")
        return 0
    work = Path(args.work_dir)
    work.mkdir(parents=True, exist_ok=True)
    out = Path(args.out)
    plots = out.parent / "perf"
    plots.mkdir(parents=True, exist_ok=True)
    log_path = work / "servers.log"
    counts = [int(c) for c in args.adapter_counts.split(",")]
    base = work / "base"
    adapters_dir = work / "adapters"
    say = print
    if not (base / "config.json").is_file():
        say(f"building a random {args.shape} base in {base}")
        from adapters.testing import build_random_base, save_base

        save_base(build_random_base("t5", args.shape, seed=0), base)
    have = len(list(adapters_dir.glob("*.safetensors"))) if adapters_dir.is_dir() else 0
    if have < max(counts):
        say(f"writing {max(counts)} random adapters to {adapters_dir}")
        write_random_adapters(
            load_base(base, device="cpu"), max(counts), adapters_dir, prompt_length=args.prompt_length
        )
    inputs = make_inputs(256, args.input_chars, seed=1)
    params = {"max_new_tokens": args.new_tokens, "min_new_tokens": args.new_tokens}
    base_spec = LoadSpec(
        "", rate=1.0, duration_s=args.duration, inputs=inputs, parameters=params, zipf_a=1.0, seed=7
    )
    results: dict = {
        "settings": {k: v for k, v in vars(args).items() if not k.startswith("_")}
        | {"cpu_threads": os.cpu_count()},
        "saturation": {},
        "latency": {},
        "device_slots": {str(c): device_slots_for(c) for c in counts},
    }

    def saturate(
        system: System, n: int, rate: float, slots: int | None = None, subset: Path | None = None
    ) -> dict:
        folder = subset or adapters_dir
        spec = replace(base_spec, rate=rate, adapters=adapter_names(folder, n))
        with Server(system, base, folder, slots or device_slots_for(n), args.batch_size, log_path) as server:
            warm(server.url, spec)
            summary = measure(server.url, spec)
        say(
            f"  {system.name:12s} {n:5d} adapters, offered {rate:6.1f}/s: achieved {summary['achieved_rate']}/s, "
            f"p50 {summary['latency_ms']['p50']} ms, p99 {summary['latency_ms']['p99']} ms, errors {summary['errors']}"
        )
        return summary

    say("saturated throughput (offered load well above capacity; the queue bound refuses the excess)")
    results["saturation"]["naive"] = {str(c): saturate(NAIVE, c, args.overload / 4) for c in counts[:2]}
    for system in (PER_ADAPTER, INPUTTUNE):
        results["saturation"][system.name] = {str(c): saturate(system, c, args.overload) for c in counts}

    mid = str(counts[1] if len(counts) > 1 else counts[0])
    sat = results["saturation"]["inputtune"][mid]["achieved_rate"]
    say(f"latency of inputtune with {mid} adapters: unloaded, and at 50% / 80% of its saturation ({sat}/s)")
    spec = replace(base_spec, adapters=adapter_names(adapters_dir, int(mid)))
    with Server(
        INPUTTUNE, base, adapters_dir, device_slots_for(int(mid)), args.batch_size, log_path
    ) as server:
        warm(server.url, spec)
        unloaded = measure(
            server.url,
            replace(spec, rate=0.5, duration_s=0, max_requests=args.unloaded_requests, poisson=False),
        )
        sweep_rates = [round(sat * f, 2) for f in (0.25, 0.5, 0.8, 1.0, 1.25)]
        sweep = []
        for rate in sweep_rates:
            sweep.append(measure(server.url, replace(spec, rate=rate)))
            say(
                f"  offered {rate}/s: achieved {sweep[-1]['achieved_rate']}/s, p50 {sweep[-1]['latency_ms']['p50']} "
                f"ms, p99 {sweep[-1]['latency_ms']['p99']} ms"
            )
    results["latency"] = {"unloaded": unloaded, "sweep": sweep, "saturation_rate": sat}
    for path in plot(sweep, plots, f"inputtune, {mid} adapters, {args.shape} on CPU"):
        path.rename(plots / f"cpu_{path.name}")

    say("a device cache too small for its working set: 64 adapters (uniform) on 16 vs 64 device slots")
    subset = work / "adapters64"
    if not subset.is_dir():
        subset.mkdir()
        for name in adapter_names(adapters_dir, 64):
            (subset / f"{name}.safetensors").symlink_to((adapters_dir / f"{name}.safetensors").resolve())
    uniform = replace(base_spec, zipf_a=0.0)
    small = {}
    for slots in (64, 16):
        spec = replace(uniform, rate=args.overload, adapters=adapter_names(subset, 64))
        with Server(INPUTTUNE, base, subset, slots, args.batch_size, log_path) as server:
            warm(server.url, spec)
            small[str(slots)] = measure(server.url, spec)
            small[str(slots)]["cache"] = cache_counts(server.url)
        say(f"  {slots} slots: {small[str(slots)]['achieved_rate']}/s, cache {small[str(slots)]['cache']}")
    results["small_cache"] = small

    say("cold adapter loads (disk -> device)")
    results["coldload"] = coldload.measure(load_base(base, device="cpu"), 100, args.prompt_length)

    (plots / "cpu_results.json").write_text(json.dumps(results, indent=1))
    write_report(out, results)
    say(f"wrote {out}")
    if not args.keep_work:
        shutil.rmtree(work / "adapters64", ignore_errors=True)
    return 0


def cache_counts(url: str) -> dict[str, float]:
    counts: dict[str, float] = {}
    for line in httpx.get(url + "/metrics").text.splitlines():
        if line.startswith("inputtune_adapter_cache_events_total{"):
            labels, value = line.split("} ")
            tier = labels.split('tier="')[1].split('"')[0]
            event = labels.split('event="')[1].split('"')[0]
            counts[f"{tier}_{event}"] = float(value)
    return counts


def write_report(out: Path, results: dict | None = None) -> None:
    """Write docs/performance.md from the measured results (by default the saved cpu_results.json)."""
    from .report_text import render

    perf = out.parent / "perf"
    results = results or json.loads((perf / "cpu_results.json").read_text())
    out.write_text(render(results, perf))
