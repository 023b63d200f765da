"""`inputtune bench coldload`: how long a cold adapter takes from disk to the device.

Writes N random adapters for the base, then for each times: read the file, validate it
(format, shapes, finiteness, fingerprint), and copy it into a device slot (synchronised).
The files were just written, so "disk" is the page cache: this is the software cost, not
the storage's.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time

import torch

from adapters import AdaptedModel, BaseModel, load_adapter
from adapters.testing import write_random_adapters

from ..stats import percentile
from ..workload import add_base_options, load_bench_base


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_base_options(parser)
    parser.add_argument("--count", type=int, default=50)
    parser.add_argument("--prompt-length", type=int, default=16)
    parser.add_argument("--json", action="store_true")


def measure(base: BaseModel, count: int, prompt_length: int) -> dict:
    """Time ``count`` cold loads (file -> validated -> device slot) of random bf16 adapters."""
    device = base.device
    model = AdaptedModel(base, num_slots=4)
    times: list[float] = []
    with tempfile.TemporaryDirectory() as tmp:
        paths = write_random_adapters(base, count, tmp, prefix="a", prompt_length=prompt_length)
        for i, path in enumerate(paths):
            if device.type == "cuda":
                torch.cuda.synchronize(device)
            start = time.perf_counter()
            weights = load_adapter(path, base.fingerprint, base.d_model)
            model.bank.load(1 + i % 4, weights)
            if device.type == "cuda":
                torch.cuda.synchronize(device)
            times.append(time.perf_counter() - start)
        size = paths[0].stat().st_size
    warm = times[2:] if len(times) > 4 else times  # the first loads pay one-time allocations
    return {
        "device": torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu",
        "dtype": str(base.dtype).replace("torch.", ""),
        "d_model": base.d_model,
        "file_bytes": size,
        "count": len(warm),
        "p50_ms": round(statistics.median(warm) * 1000, 3),
        "p99_ms": round(percentile(warm, 99) * 1000, 3),  # type: ignore[operator]
        "max_ms": round(max(warm) * 1000, 3),
    }


def run(args: argparse.Namespace) -> int:
    torch.set_grad_enabled(False)
    base = load_bench_base(args.model, args.shape, args.device, args.dtype)
    report = measure(base, args.count, args.prompt_length)
    if args.json:
        json.dump(report, sys.stdout)
        print()
    else:
        print(
            f"cold adapter load (file {report['file_bytes'] / 1e6:.1f} MB, d_model {base.d_model}) on "
            f"{report['device']}: p50 {report['p50_ms']} ms, p99 {report['p99_ms']} ms, "
            f"max {report['max_ms']} ms over {report['count']}"
        )
    return 0
