"""`inputtune bench batching`: what mixing adapters in one batch costs.

On the same B inputs, every row generating exactly the same number of tokens, it times:
  single      B rows, one adapter, one batch
  mixed       B rows spread over K adapters, one batch (what inputtune serves)
  sequential  the same rows as K per-adapter batches (serving without mixed batching)
  naive       B single-row calls (no batching at all)
Variants run interleaved in each repeat, so drift on a noisy machine hits all alike;
medians are reported.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from collections.abc import Callable

import torch

from adapters import AdaptedModel, AdapterConfig, GenerationParams, random_adapter

from ..workload import add_base_options, load_bench_base, make_inputs


def timed(fn: Callable[[], object], device: torch.device) -> float:
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    start = time.perf_counter()
    fn()
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    return time.perf_counter() - start


def bench_one(model: AdaptedModel, texts: list[str], k: int, args: argparse.Namespace) -> dict:
    """Time the four variants for K distinct adapters (slots 1..K already loaded)."""
    b = len(texts)
    params = GenerationParams(max_new_tokens=args.new_tokens, min_new_tokens=args.new_tokens)
    ids = model.encode(texts)  # tokenization is excluded: it is the same for every variant
    mixed_slots = [1 + (i % k) for i in range(b)]
    groups = [[i for i in range(b) if mixed_slots[i] == s] for s in range(1, k + 1)]

    def single():
        return model.generate(ids, [1] * b, params, path=args.path)

    def mixed():
        return model.generate(ids, mixed_slots, params, path=args.path)

    def sequential():
        for rows in groups:
            if rows:
                model.generate([ids[i] for i in rows], [mixed_slots[i] for i in rows], params, path=args.path)

    def naive():
        for i in range(b):
            model.generate([ids[i]], [mixed_slots[i]], params, path=args.path)

    variants = {"single": single, "mixed": mixed, "sequential": sequential}
    if not args.skip_naive:
        variants["naive"] = naive
    for fn in variants.values():  # warm-up (allocator, kernels, caches)
        fn()
    times: dict[str, list[float]] = {name: [] for name in variants}
    for _ in range(args.repeats):
        for name, fn in variants.items():
            times[name].append(timed(fn, model.base.device))
    tokens = b * args.new_tokens
    result: dict = {"K": k, "B": b}
    for name, values in times.items():
        med = statistics.median(values)
        result[name] = {
            "median_s": med,
            "tokens_per_s": tokens / med,
            "rows_per_s": b / med,
            "times_s": values,
        }
    # Ratios are medians of per-repeat ratios: neighbours in time share the machine's mood.
    for other in ("single", "sequential", "naive"):
        if other in times:
            pairs = [o / m for m, o in zip(times["mixed"], times[other], strict=True)]
            result[f"mixed_over_{other}"] = statistics.median(pairs)
    return result


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_base_options(parser)
    parser.add_argument("--batch-size", "-B", type=int, default=32)
    parser.add_argument(
        "--adapters",
        "-K",
        type=int,
        nargs="+",
        default=[8, 32],
        help="numbers of distinct adapters to mix (one run each)",
    )
    parser.add_argument("--prompt-length", type=int, default=16)
    parser.add_argument("--new-tokens", type=int, default=16, help="tokens generated per row (min = max)")
    parser.add_argument("--input-chars", type=int, default=96, help="approximate input length in characters")
    parser.add_argument("--repeats", type=int, default=5, help="timed repeats per variant (median reported)")
    parser.add_argument("--path", choices=["fast", "reference"], default="fast")
    parser.add_argument("--skip-naive", action="store_true", help="skip the slow B single-row calls")
    parser.add_argument("--json", action="store_true", help="print one JSON object instead of a table")


def run(args: argparse.Namespace) -> int:
    torch.set_grad_enabled(False)
    base = load_bench_base(args.model, args.shape, args.device, args.dtype)
    device, dtype = base.device, base.dtype
    kmax = max(args.adapters)
    model = AdaptedModel(base, num_slots=kmax)
    for slot in range(1, kmax + 1):
        config = AdapterConfig(
            "input-tuning", base.d_model, prompt_length=args.prompt_length, base_fingerprint=base.fingerprint
        )
        model.load_adapter(slot, random_adapter(config, seed=slot))
    texts = make_inputs(args.batch_size, args.input_chars)
    runs = [bench_one(model, texts, k, args) for k in args.adapters]
    report = {
        "device": torch.cuda.get_device_name(device)
        if device.type == "cuda"
        else f"cpu ({torch.get_num_threads()} threads)",
        "dtype": str(dtype).replace("torch.", ""),
        "model": args.model or f"random {args.shape}",
        "d_model": base.d_model,
        "prompt_length": args.prompt_length,
        "new_tokens": args.new_tokens,
        "input_tokens_mean": statistics.mean(len(r) for r in model.encode(texts)),
        "path": args.path,
        "repeats": args.repeats,
        "runs": runs,
    }
    if args.json:
        json.dump(report, sys.stdout)
        print()
    else:
        print_table(report)
    return 0


def print_table(report: dict) -> None:
    print(
        f"# {report['model']} (d_model {report['d_model']}) on {report['device']}, {report['dtype']}, "
        f"prompt {report['prompt_length']}, {report['new_tokens']} new tokens/row, "
        f"~{report['input_tokens_mean']:.0f} input tokens/row, median of {report['repeats']}"
    )
    names = [n for n in ("single", "mixed", "sequential", "naive") if n in report["runs"][0]]
    print(
        f"{'B':>4} {'K':>4} "
        + " ".join(f"{n + ' tok/s':>16}" for n in names)
        + f" {'mixed/single':>13} {'mixed/seq':>10}"
    )
    for r in report["runs"]:
        cells = " ".join(f"{r[n]['tokens_per_s']:>16.1f}" for n in names)
        print(
            f"{r['B']:>4} {r['K']:>4} {cells} {r['mixed_over_single']:>13.3f} "
            f"{r['mixed_over_sequential']:>10.2f}"
        )
