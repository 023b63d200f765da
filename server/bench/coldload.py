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
from pathlib import Path

import torch

from adapters import AdaptedModel, AdapterConfig, load_adapter, load_base, random_adapter, save_adapter
from adapters.base import resolve_device, resolve_dtype
from adapters.testing import build_random_base


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(q / 100 * len(ordered)) - 1))]


def run(args: argparse.Namespace) -> int:
    device = resolve_device(args.device)
    dtype = resolve_dtype(args.dtype, device)
    torch.set_grad_enabled(False)
    if args.model:
        base = load_base(args.model, device=str(device), dtype=dtype)
    else:
        base = build_random_base("t5", args.shape, seed=0, device=device, dtype=dtype)
    model = AdaptedModel(base, num_slots=4)
    config = AdapterConfig(
        "input-tuning", base.d_model, args.prompt_length, base_fingerprint=base.fingerprint
    )
    times: list[float] = []
    with tempfile.TemporaryDirectory() as tmp:
        paths = []
        for i in range(args.count):
            paths.append(
                save_adapter(
                    random_adapter(config, seed=i), Path(tmp) / f"a{i}.safetensors", dtype=torch.bfloat16
                )
            )
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
    report = {
        "device": torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu",
        "dtype": str(dtype).replace("torch.", ""),
        "d_model": base.d_model,
        "file_bytes": size,
        "count": len(warm),
        "p50_ms": round(statistics.median(warm) * 1000, 3),
        "p99_ms": round(percentile(warm, 99) * 1000, 3),
        "max_ms": round(max(warm) * 1000, 3),
    }
    if args.json:
        json.dump(report, sys.stdout)
        print()
    else:
        print(
            f"cold adapter load (file {size / 1e6:.1f} MB, d_model {base.d_model}) on {report['device']}: "
            f"p50 {report['p50_ms']} ms, p99 {report['p99_ms']} ms, max {report['max_ms']} ms over {len(warm)}"
        )
    return 0
