"""Markdown of docs/performance.md from the measured results (no figure is typed by hand)."""

from __future__ import annotations

import argparse
import json
from pathlib import Path


def _f(value, digits: int = 1) -> str:
    return "n/a" if value is None else f"{value:.{digits}f}"


def _ratio(a, b) -> str:
    return "n/a" if not a or not b else f"{a / b:.2f}×"


def render(results: dict, perf_dir: Path) -> str:
    """The whole of docs/performance.md: the CPU load tests (``results``, as cpu_results.json holds
    them), then the sections whose measurements lie in ``perf_dir`` (frontends.json, gpu/)."""
    args = argparse.Namespace(**results["settings"])
    sat = results["saturation"]
    counts = list(sat["inputtune"])
    naive = sat["naive"]
    lines = [
        "# Performance",
        "",
        "Every figure here was measured by one command on one machine, over HTTP, with the open-loop load",
        "tester (`inputtune loadtest`): Poisson arrivals, adapters drawn with Zipf popularity (exponent 1),",
        f"every request generating exactly {args.new_tokens} tokens (`min_new_tokens = max_new_tokens`) from inputs",
        f"of about {args.input_chars} characters, so systems are compared on equal work. The base is a random",
        f"{args.shape}-shaped T5 (fp32, CPU, {results['settings']['cpu_threads']} cores); adapters are random",
        f"input-tuning adapters (prompt length {args.prompt_length}, inner size 2×d_model). This machine is",
        "noisy: compare ratios within the run, not absolute figures across runs.",
        "",
        "Regenerate (about 15 minutes on 2 cores):",
        "",
        "```bash",
        f"inputtune bench report --out docs/performance.md --shape {args.shape} --duration {args.duration:g} "
        f"--overload {args.overload:g}",
        "```",
        "",
        "Systems:",
        "- **naive**: one request at a time, plain `transformers` generate, the adapter applied to that request",
        "  (`inputtune serve-naive`, what a user without inputtune would run);",
        "- **per-adapter**: inputtune's server with static batches that each hold one adapter",
        "  (`--scheduling static --batching per-adapter`, what systems without mixed batching do);",
        "- **inputtune**: continuous batching, rows of many adapters in every step (the default).",
        "",
        f"## Saturated throughput (requests/s; offered {args.overload:g} req/s, far above capacity)",
        "",
        "| adapters | device slots | naive | per-adapter | inputtune | inputtune / naive | inputtune / per-adapter |",
        "|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for c in counts:
        n = naive.get(c, {}).get("achieved_rate")
        p = sat["per-adapter"][c]["achieved_rate"]
        i = sat["inputtune"][c]["achieved_rate"]
        slots = results["device_slots"][c]
        lines.append(
            f"| {int(c):,} | {slots} | {_f(n, 2) if n else '-'} | {_f(p, 2)} | {_f(i, 2)} | "
            f"{_ratio(i, n) if n else '-'} | {_ratio(i, p)} |"
        )
    i1 = sat["inputtune"][counts[0]]["achieved_rate"]
    ilast = sat["inputtune"][counts[-1]]["achieved_rate"]
    mid = counts[1] if len(counts) > 1 else counts[0]
    naive_mid = naive.get(mid, {}).get("achieved_rate")
    lines += [
        "",
        "Generated tokens/s at saturation, inputtune: "
        + ", ".join(
            f"{int(c):,} adapters {_f(sat['inputtune'][c]['generated_tokens_per_s'])}" for c in counts
        )
        + ".",
        "",
        "## Latency",
        "",
    ]
    lat = results["latency"]
    unloaded = lat["unloaded"]["latency_ms"]
    lines += [
        f"inputtune with {int(mid):,} adapters; saturation {lat['saturation_rate']} req/s (above). Unloaded = one",
        f"request at a time ({lat['unloaded']['requests']} requests).",
        "",
        "| offered load | offered req/s | achieved req/s | p50 ms | p95 ms | p99 ms | queue p99 ms | errors |",
        "|---|---:|---:|---:|---:|---:|---:|---|",
        f"| unloaded | - | - | {_f(unloaded['p50'])} | {_f(unloaded['p95'])} | {_f(unloaded['p99'])} | "
        f"{_f(lat['unloaded']['queue_ms']['p99'])} | {lat['unloaded']['errors'] or 'none'} |",
    ]
    fractions = ("25%", "50%", "80%", "100%", "125%")
    for frac, s in zip(fractions, lat["sweep"], strict=False):
        lines.append(
            f"| {frac} | {s['offered_rate']} | {s['achieved_rate']} | {_f(s['latency_ms']['p50'])} | "
            f"{_f(s['latency_ms']['p95'])} | {_f(s['latency_ms']['p99'])} | {_f(s['queue_ms']['p99'])} | "
            f"{s['errors'] or 'none'} |"
        )
    at80 = lat["sweep"][2]["latency_ms"]["p99"] if len(lat["sweep"]) > 2 else None
    lines += [
        "",
        "![throughput vs offered load](perf/cpu_loadtest_throughput.png) ![latency vs offered load](perf/cpu_loadtest_latency.png)",
        "",
        "## Adapter cache",
        "",
    ]
    cold = results["coldload"]
    small = results["small_cache"]
    big_rate, small_rate = small["64"]["achieved_rate"], small["16"]["achieved_rate"]
    lines += [
        f"Cold adapter load, disk (page cache) → validated → device slot, d_model {cold['d_model']}, "
        f"{cold['file_bytes'] / 1e6:.1f} MB bf16 file: **p50 {cold['p50_ms']} ms, p99 {cold['p99_ms']} ms** "
        f"({cold['count']} loads).",
        "",
        "A working set 4× the device tier: 64 adapters drawn uniformly, at saturation:",
        "",
        "| device slots | req/s | device hits | device misses | device evictions |",
        "|---:|---:|---:|---:|---:|",
    ]
    for tier in ("64", "16"):
        cache = small[tier]["cache"]
        lines.append(
            f"| {tier} | {_f(small[tier]['achieved_rate'], 2)} | {cache.get('device_hit', 0):.0f} | "
            f"{cache.get('device_miss', 0):.0f} | {cache.get('device_eviction', 0):.0f} |"
        )
    lines += [
        "",
        f"Throughput cost of the too-small cache: {_ratio(small_rate, big_rate)} of the throughput with every "
        "adapter resident.",
        "",
        "## Targets",
        "",
        "| target | measured | met |",
        "|---|---|---|",
        _target("≥ 6× naive at saturation", sat["inputtune"][mid]["achieved_rate"], naive_mid, 6.0, "ge"),
        _target(
            f"{int(counts[-1]):,} adapters keep ≥ 90% of single-adapter throughput", ilast, i1, 0.9, "ge"
        ),
        _target("p99 at 80% load ≤ 3× unloaded p50", at80, unloaded["p50"], 3.0, "le"),
        "",
    ]
    lines += frontends_section(perf_dir / "frontends.json")
    gpu_dir = perf_dir / "gpu"
    lines += gpu_section(gpu_dir if gpu_dir.is_dir() else None)
    return "\n".join(lines) + "\n"


def frontends_section(path: Path) -> list[str]:
    """Streaming and the front ends, on the embedded demo (``inputtune bench frontends``)."""
    if not path.is_file():
        return []
    r = json.loads(path.read_text())
    s = r["stream_64"]
    lines = [
        "## Streaming and the front ends (the embedded demo)",
        "",
        f"Measured by `inputtune bench frontends` ({r['date']}, {r['cpu_threads']} cores): one `inputtune serve` of the",
        f"embedded demo, inputs from the fr-en dev set, adapters {', '.join(r['adapters'])} in turn.",
        "",
        f"A streamed answer of exactly 64 tokens, one request a second ({s['ok']} requests): the first token arrives",
        f"after **{_f(s['ttft_ms']['p50'])} ms** (p50; p99 {_f(s['ttft_ms']['p99'])}), the whole answer after "
        f"**{_f(s['latency_ms']['p50'])} ms** (p50), {_f(100 * s['ttft_ms']['p50'] / s['latency_ms']['p50'])}% of it;",
        f"tokens then come every {_f(s['itl_ms']['p50'])} ms (p50 between tokens; p99 {_f(s['itl_ms']['p99'])}). The first token",
        "waits for the request's admission (its adapter, its encoder pass, the batching wait of",
        f"`max_wait_ms` {r['max_wait_ms']:g}) and one decoder step; the server measures {_f(r['server_ttft_ms'])} ms of it from arrival",
        "to the first token handed to the stream (`inputtune_time_to_first_token_seconds`), the rest is HTTP.",
        "",
        f"Each front end at {r['rate']:g} req/s ({r['new_tokens']} tokens each, {r['duration_s']:g} s, medians of {r['rounds']} alternating rounds):",
        "",
        "| front end | answer | ok | p50 latency ms | p99 latency ms | p50 first token ms |",
        "|---|---|---:|---:|---:|---:|",
    ]
    for row in r["frontends"]:
        lines.append(
            f"| {row['api']} | {'streamed' if row['stream'] else 'whole'} | {row['ok']}/{row['requests']} | "
            f"{_f(row['p50_ms'])} | {_f(row['p99_ms'])} | {_f(row['ttft_p50_ms']) if row['stream'] else '-'} |"
        )
    return lines + [
        "",
        "`native` is `POST /generate` (`/generate_stream`), `tgi` is `POST /` with `parameters.adapter_id` (what",
        "TGI, LoRAX and Hugging Face clients send), `openai` is `POST /v1/completions`.",
        "",
    ]


def _target(name: str, value, reference, bound: float, how: str) -> str:
    if not value or not reference:
        return f"| {name} | n/a | n/a |"
    ratio = value / reference
    ok = ratio >= bound if how == "ge" else ratio <= bound
    return f"| {name} | {ratio:.2f}× | {'yes' if ok else '**no**'} |"


def gpu_section(gpu_dir: Path | None) -> list[str]:
    lines = ["## GPU (T5-large shape, bf16)", ""]
    if gpu_dir is None or not (gpu_dir / "batching.json").is_file():
        return lines + [
            "No GPU figures in this checkout: run `scripts/gpu_bench.sh docs/perf/gpu` on an H100/H200",
            "and regenerate. The script was tested on the CPU with `--small`.",
            "",
        ]
    batching = json.loads((gpu_dir / "batching.json").read_text())
    lines += [
        f"Measured with `scripts/gpu_bench.sh` on **{batching['device']}** ({batching['dtype']}), random weights,",
        "no network, the repository copied over as it is.",
        "",
        f"`inputtune bench batching`: B={batching['runs'][0]['B']} rows, {batching['new_tokens']} new tokens each, "
        f"prompt {batching['prompt_length']}, ~{batching['input_tokens_mean']:.0f} input tokens:",
        "",
        "| K adapters | single-adapter tok/s | mixed tok/s | sequential per-adapter tok/s | mixed / single | mixed / sequential |",
        "|---:|---:|---:|---:|---:|---:|",
    ]
    for r in batching["runs"]:
        lines.append(
            f"| {r['K']} | {r['single']['tokens_per_s']:.0f} | {r['mixed']['tokens_per_s']:.0f} | "
            f"{r['sequential']['tokens_per_s']:.0f} | {r['mixed_over_single']:.3f} | "
            f"{r['mixed_over_sequential']:.2f} |"
        )
    cold_path = gpu_dir / "coldload.json"
    if cold_path.is_file():
        cold = json.loads(cold_path.read_text())
        lines += [
            "",
            f"Cold adapter load (d_model {cold['d_model']}, {cold['file_bytes'] / 1e6:.1f} MB bf16 file, "
            f"disk → validated → GPU slot): p50 {cold['p50_ms']} ms, p99 {cold['p99_ms']} ms.",
        ]
    for name, label in (
        ("serve_load", "inputtune serve (continuous, mixed)"),
        ("naive_load", "naive baseline"),
    ):
        path = gpu_dir / f"{name}.json"
        if not path.is_file():
            continue
        runs = json.loads(path.read_text())["runs"]
        lines += [
            "",
            f"Load test, {label}, 64 adapters (Zipf 1):",
            "",
            "| offered req/s | achieved req/s | tokens/s | p50 ms | p99 ms | errors |",
            "|---:|---:|---:|---:|---:|---|",
        ]
        for r in runs:
            lines.append(
                f"| {r['offered_rate']:g} | {r['achieved_rate']} | {r['generated_tokens_per_s']} | "
                f"{_f(r['latency_ms']['p50'])} | {_f(r['latency_ms']['p99'])} | {r['errors'] or 'none'} |"
            )
    return lines + [""]
