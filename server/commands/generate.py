"""`inputtune generate`: load the base (and one adapter), generate, print one line per input."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from adapters import AdaptedModel, GenerationParams, adapter_path, load_adapter

from ..defaults import default_model_and_adapters


def resolve_model(model: str | None, adapter_dir: str | None) -> tuple[str, Path | None]:
    """Explicit options win; with no --model, the embedded default and its adapters."""
    if model is None:
        default_model, default_adapters = default_model_and_adapters()
        return str(default_model), Path(adapter_dir) if adapter_dir else default_adapters
    return model, Path(adapter_dir) if adapter_dir else None


def params_from_args(args: argparse.Namespace) -> GenerationParams:
    return GenerationParams(
        max_new_tokens=args.max_new_tokens,
        num_beams=args.num_beams,
        do_sample=args.do_sample,
        temperature=args.temperature,
        top_p=args.top_p,
        top_k=args.top_k,
        repetition_penalty=args.repetition_penalty,
        seed=args.seed,
    )


def run(args: argparse.Namespace) -> int:
    params = params_from_args(args)
    texts = [line.rstrip("\n") for line in sys.stdin] if args.texts == ["-"] else list(args.texts)
    if not texts or any(not t.strip() for t in texts):
        raise ValueError("every input must be non-empty text")
    model_path, adapter_dir = resolve_model(args.model, args.adapter_dir)
    model = AdaptedModel.load(model_path, device=args.device, dtype=args.dtype, num_slots=1)
    slot = 0
    if args.adapter:
        if args.adapter.endswith(".safetensors"):
            path = Path(args.adapter)
        elif adapter_dir is None:
            raise ValueError("--adapter NAME needs --adapter-dir (or pass a path to a .safetensors file)")
        else:
            path = adapter_path(adapter_dir, args.adapter)
        model.load_adapter(1, load_adapter(path), name=args.adapter)
        slot = 1
    for out in model.generate(texts, [slot] * len(texts), params):
        print(" ".join(out.text.splitlines()))  # one line per input, whatever the model wrote
    return 0
