"""Benchmark the pretraining recipe's parts on this machine: tokenizer training, corpus preparation,
batch building and optimizer steps (tokens/s) of presets' model sizes. Prints one JSON line per
variant; trains nothing worth keeping.

    inputtune bench pretrain --tokenizer runs/tok8k --preset cpu --preset gpu --steps 8
    inputtune bench pretrain --preset gpu --grid mixture.step_tokens=65536,131072 \\
        --grid model.attn_implementation=sdpa,eager --device cuda
"""

from __future__ import annotations

import argparse
import itertools
import json
import time
from pathlib import Path

import torch
from transformers import AutoTokenizer

from training.pretrain.config import load_preset
from training.pretrain.mixture import MixtureStream, prepare_corpus
from training.pretrain.model import (
    build_model,
    count_parameters,
    make_optimizer,
    train_step,
    training_device,
)
from training.pretrain.tokenizer import train_on_data


def _variants(presets: list[str], overrides: list[str], grid: list[str]) -> list[tuple[str, list[str]]]:
    """(preset, overrides) for every preset and every combination of the --grid values."""
    axes = []
    for spec in grid:
        key, _, values = spec.partition("=")
        axes.append([f"{key}={value}" for value in values.split(",")])
    return [(name, [*overrides, *combo]) for name in presets for combo in itertools.product(*axes)]


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--preset", action="append", default=[], help="preset(s) whose model to time")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE")
    parser.add_argument(
        "--grid",
        action="append",
        default=[],
        metavar="KEY=V1,V2",
        help="time every value of this preset field (repeatable: all combinations)",
    )
    parser.add_argument("--tokenizer", type=Path, default=None, help="tokenizer folder (default: train one)")
    parser.add_argument("--data-dir", type=Path, default=None)
    parser.add_argument("--device", default="auto")
    parser.add_argument(
        "--steps", type=int, default=8, help="timed steps per variant (after 2 warm-up steps)"
    )
    parser.add_argument("--json", type=Path, default=None, help="also write the figures here")
    parser.add_argument(
        "--prep-only", action="store_true", help="time the tokenizer and data preparation only"
    )


def run(args: argparse.Namespace) -> int:
    device = training_device(args.device)
    variants = _variants(args.preset or ["gpu"], args.overrides, args.grid)
    first = load_preset(*variants[0])
    figures: dict = {"device": str(device), "torch_threads": torch.get_num_threads(), "variants": []}
    if device.type == "cuda":
        figures["gpu"] = torch.cuda.get_device_name(device)

    folder = args.tokenizer
    if folder is None:
        folder = Path("runs/bench_tokenizer")
        trained = train_on_data(first.tokenizer, args.data_dir, folder)
        figures["tokenizer"] = {
            "corpus_read_s": round(trained["read_s"], 2),
            "train_s": round(trained["train_s"], 2),
        }
        print(json.dumps({"tokenizer": figures["tokenizer"], "folder": str(folder)}), flush=True)
    tokenizer = AutoTokenizer.from_pretrained(str(folder))

    corpora: dict[str, tuple] = {}
    for name, overrides in variants:
        preset = load_preset(name, overrides)
        data_key = json.dumps(preset.data.__dict__, sort_keys=True)
        if data_key not in corpora:
            started = time.perf_counter()
            corpus = prepare_corpus(tokenizer, preset.data, args.data_dir)
            prep = {k: corpus.facts[k] for k in ("read_s", "tokenize_s", "pack_s")}
            prep["total_s"] = round(time.perf_counter() - started, 2)
            prep["book_tokens"] = corpus.facts["book_tokens_train"]
            corpora[data_key] = (corpus, prep)
            print(json.dumps({"data_prep": prep}), flush=True)
        corpus, prep = corpora[data_key]
        if args.prep_only:
            continue
        stream = MixtureStream(corpus, preset.data, preset.mixture, preset.train.seed)
        started = time.perf_counter()
        batches = [stream.step_batches(step) for step in range(args.steps + 2)]
        build_ms = (time.perf_counter() - started) / len(batches) * 1000
        model = build_model(preset.model, tokenizer, seed=0, device=device)
        optimizer = make_optimizer(
            model, preset.train.lr, preset.train.weight_decay, preset.train.betas, device
        )
        model.train()
        if device.type == "cuda":
            torch.cuda.reset_peak_memory_stats()

        def step(micro, model=model, optimizer=optimizer):
            train_step(model, micro, device)
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)

        for micro in batches[:2]:
            step(micro)
        if device.type == "cuda":
            torch.cuda.synchronize()
        started = time.perf_counter()
        tokens = padded = 0
        for micro in batches[2:]:
            step(micro)
            tokens += sum(b.tokens for b in micro)
            padded += sum(b.input_ids.size + b.labels.size for b in micro)
        if device.type == "cuda":
            torch.cuda.synchronize()
        seconds = time.perf_counter() - started
        row = {
            "preset": preset.name,
            "overrides": overrides,
            "parameters": count_parameters(model),
            "batch_build_ms": round(build_ms, 1),
            "step_s": round(seconds / args.steps, 4),
            "tokens_per_step": tokens // args.steps,
            "padding_share": round(1 - tokens / padded, 3),
            "tokens_per_s": round(tokens / seconds),
            "autocast_bf16": device.type == "cuda",
        }
        if device.type == "cuda":
            row["max_memory_gb"] = round(torch.cuda.max_memory_allocated() / 2**30, 2)
        figures["variants"].append(row)
        print(json.dumps(row), flush=True)
        del model, optimizer
    if args.json:
        args.json.write_text(json.dumps(figures, indent=2) + "\n")
    return 0
