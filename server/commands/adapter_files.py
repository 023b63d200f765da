"""`inputtune adapters ...`: inspect and import adapter files."""

from __future__ import annotations

import argparse
import json

from adapters import check_compatible, import_peft_prompt, load_adapter, load_base, save_adapter


def run(args: argparse.Namespace) -> int:
    if args.adapters_command == "import-peft":
        base = load_base(args.model, device="cpu") if args.model else None
        weights = import_peft_prompt(
            args.folder,
            base_model=base.name if base else "",
            base_fingerprint=base.fingerprint if base else "",
        )
        if base is not None:
            check_compatible(weights.config, base.fingerprint, base.d_model, origin=args.folder)
        save_adapter(weights, args.out)
        print(
            f"wrote {args.out}: prompt-tuning, {weights.config.prompt_length} prompt tokens, "
            f"d_model={weights.config.d_model}"
        )
        return 0
    if args.adapters_command == "synth":
        return synth(args)
    if args.adapters_command == "inspect":
        weights = load_adapter(args.path)
        if args.model:
            base = load_base(args.model, device="cpu")
            check_compatible(weights.config, base.fingerprint, base.d_model, origin=args.path)
        print(
            json.dumps(
                {"config": weights.config.to_dict(), "metadata": weights.metadata, "bytes": weights.nbytes},
                indent=2,
            )
        )
        return 0
    raise AssertionError(args.adapters_command)


def synth(args: argparse.Namespace) -> int:
    """N random adapters (``<prefix><i>``) whose config carries the base's fingerprint."""
    from pathlib import Path

    import torch
    from tqdm import tqdm

    from adapters import AdapterConfig, random_adapter

    if args.count < 1:
        raise ValueError(f"--count must be >= 1, got {args.count}")
    base = load_base(args.base, device="cpu")
    out = Path(args.out)
    dtype = torch.bfloat16 if args.dtype == "bfloat16" else torch.float32
    width = len(str(args.count - 1))
    for i in tqdm(range(args.count), desc="adapters", unit="file"):
        config = AdapterConfig(
            args.kind,
            base.d_model,
            args.prompt_length,
            base_model=base.name,
            base_fingerprint=base.fingerprint,
        )
        weights = random_adapter(config, seed=i)
        weights.metadata["note"] = "random adapter for speed tests"
        save_adapter(weights, out / f"{args.prefix}{i:0{width}d}.safetensors", dtype=dtype)
    print(f"wrote {args.count} {args.kind} adapters to {out}")
    return 0
