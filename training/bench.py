"""Training throughput benchmark: tokens/s of each method on a random base of a real shape.

``inputtune bench train --shape t5-small --methods input-tuning prompt-tuning fine-tuning`` prints one
row per method: steady-state tokens/s (source + target tokens, after the first
``--warmup`` steps), seconds per step, peak GPU memory, and the time of one dev evaluation through
``AdaptedModel.generate``. Synthetic pairs of random letters (reversed), so it needs no data folder;
the byte-level tokenizers of random bases make one token per character.

The trainer (accelerate) is imported when the benchmark runs: ``inputtune --help`` imports every
command, and the serving image lacks the training extras.
"""

from __future__ import annotations

import argparse
import json
import random
import tempfile
from pathlib import Path

import torch

from adapters.testing import GPT2_SHAPES, T5_SHAPES, build_random_base
from training.config import AdapterTrainConfig
from training.data import EvalItem, Example


def synthetic_pairs(n: int, source_chars: int, target_chars: int, seed: int = 0) -> list[Example]:
    rng = random.Random(seed)

    def text(mean: int) -> str:
        return "".join(
            rng.choice("abcdefghij ") for _ in range(rng.randint(mean // 2, mean * 3 // 2))
        ).strip()

    return [Example(text(source_chars) or "a", text(target_chars) or "b") for _ in range(n)]


def _train(args: argparse.Namespace, accelerator, method: str, steps: int, pairs, dev) -> list[dict]:
    """One training run on a fresh random base; returns its log records."""
    from training.trainer import Trainer

    torch.manual_seed(0)
    bf16_base = args.bf16_base and method != "fine-tuning"
    base = build_random_base(
        args.family,
        args.shape,
        device=accelerator.device,
        dtype=torch.bfloat16 if bf16_base else torch.float32,
    )
    with tempfile.TemporaryDirectory() as tmp:
        config = AdapterTrainConfig(
            model=base.name,
            out=str(Path(tmp) / ("model" if method == "fine-tuning" else "a.safetensors")),
            method=method,
            max_steps=steps,
            batch_size=args.batch_size,
            prompt_length=args.prompt_length,
            bf16=args.bf16,
            log_every=1,
            progress=False,
            device=args.device,
            eval_every=steps if dev else 0,
            eval_samples=args.eval_samples,
            eval_batch_size=args.eval_batch_size,
            max_new_tokens=args.max_new_tokens,
            lr=1e-5,
            dtype="bfloat16" if bf16_base else "float32",
        )
        result = Trainer(config, base, pairs, dev, accelerator=accelerator).train()
        return [json.loads(line) for line in Path(result.log_path).read_text().splitlines()]


def measure(args: argparse.Namespace) -> list[dict]:
    """One row of figures per method (see the module docstring)."""
    from training.common.device import make_accelerator

    accelerator = make_accelerator(args.device)
    cuda = accelerator.device.type == "cuda"
    pairs = synthetic_pairs(args.batch_size * (args.steps + 1), args.source_chars, args.target_chars)
    dev = [
        EvalItem(e.source, (e.target,))
        for e in synthetic_pairs(args.eval_samples, args.source_chars, args.target_chars, seed=1)
    ]
    if cuda and args.warmup_run:  # CUDA context, cuBLAS and the caching allocator warm up outside the timings
        _train(args, accelerator, args.methods[0], args.warmup, pairs, None)
    rows = []
    for method in args.methods:
        if cuda:
            torch.cuda.empty_cache()
            torch.cuda.reset_peak_memory_stats()
        records = _train(args, accelerator, method, args.steps, pairs, dev)
        steady = [r for r in records if "loss" in r and r["step"] > args.warmup]
        evals = [r["eval_seconds"] for r in records if "dev" in r]
        rows.append(
            {
                "method": method,
                "tokens_per_s": sorted(r["tokens_per_s"] for r in steady)[len(steady) // 2]
                if steady
                else None,
                "step_s": [r["elapsed_s"] for r in records if "loss" in r][-1]
                / args.steps,  # warmup included
                "eval_s": evals[0] if evals else None,
                "peak_gib": torch.cuda.max_memory_allocated() / 2**30 if cuda else None,
                "final_loss": [r["loss"] for r in records if "loss" in r][-1],
            }
        )
    return rows


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--family", choices=["t5", "gpt2"], default="t5")
    p.add_argument(
        "--shape", default="t5-small", help=f"T5: {', '.join(T5_SHAPES)}; GPT-2: {', '.join(GPT2_SHAPES)}"
    )
    p.add_argument("--methods", nargs="+", default=["input-tuning", "prompt-tuning", "fine-tuning"])
    p.add_argument("--device", default="auto")
    p.add_argument("--steps", type=int, default=60)
    p.add_argument("--warmup", type=int, default=10, help="steps left out of the tokens/s median")
    p.add_argument(
        "--no-warmup-run",
        dest="warmup_run",
        action="store_false",
        help="on a GPU, skip the untimed --warmup-step run that precedes the timed ones",
    )
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--prompt-length", type=int, default=20)
    p.add_argument("--source-chars", type=int, default=120)
    p.add_argument("--target-chars", type=int, default=100)
    p.add_argument("--bf16", action="store_true", help="bf16 autocast")
    p.add_argument("--bf16-base", action="store_true", help="frozen base weights in bf16 (adapter methods)")
    p.add_argument("--eval-samples", type=int, default=64)
    p.add_argument("--eval-batch-size", type=int, default=64)
    p.add_argument("--max-new-tokens", type=int, default=64)
    p.add_argument("--json", action="store_true")


def run(args: argparse.Namespace) -> int:
    rows = measure(args)
    if args.json:
        print(json.dumps({"settings": vars(args), "rows": rows}))
        return 0
    device = torch.cuda.get_device_name() if torch.cuda.is_available() and args.device != "cpu" else "cpu"
    print(
        f"{args.family} {args.shape} on {device}, batch {args.batch_size}, ~{args.source_chars}+"
        f"{args.target_chars} tokens/row, prompt {args.prompt_length}, bf16 autocast {args.bf16}, "
        f"bf16 base {args.bf16_base}"
    )
    print(f"{'method':<14} {'tokens/s':>10} {'s/step':>8} {'eval s':>7} {'peak GiB':>9} {'loss':>8}")
    for r in rows:
        peak = "-" if r["peak_gib"] is None else f"{r['peak_gib']:.1f}"
        evals = "-" if r["eval_s"] is None else f"{r['eval_s']:.2f}"
        print(
            f"{r['method']:<14} {r['tokens_per_s']:>10.0f} {r['step_s']:>8.3f} {evals:>7} {peak:>9} "
            f"{r['final_loss']:>8.3f}"
        )
    return 0
