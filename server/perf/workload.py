"""What the benchmarks and the load tester run on: a base (a folder, or a random base of a real
shape) and synthetic inputs."""

from __future__ import annotations

import argparse

import torch

from adapters import BaseModel, load_base
from adapters.base import resolve_device, resolve_dtype
from adapters.testing import T5_SHAPES, build_random_base

WORDS = [
    "name",
    "eatType",
    "food",
    "priceRange",
    "customer",
    "rating",
    "area",
    "family",
    "friendly",
    "near",
    "the",
    "river",
    "city",
    "centre",
    "restaurant",
    "coffee",
    "shop",
    "pub",
    "Italian",
    "French",
    "Chinese",
    "cheap",
    "moderate",
    "high",
    "average",
    "yes",
    "no",
]


def make_inputs(count: int, chars: int, seed: int = 0) -> list[str]:
    """Deterministic word salad of roughly ``chars`` characters per row, lengths varying ±25%."""
    gen = torch.Generator().manual_seed(seed)
    rows = []
    for _ in range(count):
        target = int(chars * (0.75 + 0.5 * float(torch.rand((), generator=gen))))
        words: list[str] = []
        while sum(len(w) + 1 for w in words) < target:
            words.append(WORDS[int(torch.randint(len(WORDS), (), generator=gen))])
        rows.append(" ".join(words))
    return rows


def add_base_options(parser: argparse.ArgumentParser, shape: str = "t5-small") -> None:
    parser.add_argument("--model", help="base folder; default: a random base of --shape")
    parser.add_argument(
        "--shape", default=shape, help=f"random T5 shape when no --model ({', '.join(T5_SHAPES)})"
    )
    parser.add_argument("--device", default="cpu", help="auto | cpu | cuda | cuda:N")
    parser.add_argument("--dtype", default="auto", help="auto | float32 | bfloat16 | float16 (GPU only)")


def load_bench_base(model: str | None, shape: str, device: str, dtype: str) -> BaseModel:
    """The base a benchmark times: the folder ``model``, else a random T5 of ``shape`` (seed 0)."""
    dev = resolve_device(device)
    torch_dtype = resolve_dtype(dtype, dev)
    if model:
        return load_base(model, device=str(dev), dtype=torch_dtype)
    return build_random_base("t5", shape, seed=0, device=dev, dtype=torch_dtype)
