"""`inputtune bench ...`: benchmarks that print figures (each in the module that measures it)."""

from __future__ import annotations

import argparse
import importlib

BENCHMARKS = {  # name -> (module, help)
    "batching": ("server.perf.bench.batching", "mixed-adapter batches vs single-adapter, sequential, naive"),
    "coldload": ("server.perf.bench.coldload", "disk -> device latency of cold adapters"),
    "report": ("server.perf.bench.report", "regenerate docs/performance.md (load tests over HTTP)"),
    "frontends": (
        "server.perf.bench.frontends",
        "streaming and the native/TGI/OpenAI front ends on the demo",
    ),
    "overload": (
        "server.perf.bench.overload",
        "past capacity: 2x/4x load, shedding, recovery, abandoned requests",
    ),
    "engines": (
        "server.perf.bench.engines",
        "decode speed: HF, static, continuous and CTranslate2 on one base",
    ),
    "prompt-lengths": (
        "server.perf.bench.prompts",
        "serving throughput per adapter kind and prompt length (the study's part 4)",
    ),
    "soak": ("server.perf.bench.soak", "steady load while an adapter is uploaded, replaced, deleted"),
    "train": ("training.bench", "training throughput (tokens/s) of each method on a random base"),
    "pretrain": ("training.pretrain.bench", "the pretraining recipe's parts: tokenizer, data, steps"),
}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="bench", required=True)
    for name, (module, help_text) in BENCHMARKS.items():
        importlib.import_module(module).add_arguments(sub.add_parser(name, help=help_text))


def run(args: argparse.Namespace) -> int:
    return importlib.import_module(BENCHMARKS[args.bench][0]).run(args)
