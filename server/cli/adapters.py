"""`inputtune adapters ...`: inspect, import and synthesize adapter files; show what one changes."""

from __future__ import annotations

import argparse
import json

from adapters import (
    InvalidParametersError,
    check_compatible,
    import_peft_prompt,
    load_adapter,
    load_base,
    save_adapter,
)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="adapters_command", required=True)
    imp = sub.add_parser("import-peft", help="convert a PEFT prompt-tuning folder to an adapter file")
    imp.add_argument("folder")
    imp.add_argument("--out", required=True, help="output .safetensors path")
    imp.add_argument(
        "--model", help="base the prompt belongs to (records its fingerprint); default: none recorded"
    )
    synth = sub.add_parser("synth", help="write N random adapters for a base (for speed tests)")
    synth.add_argument(
        "--base", required=True, help="base model folder (its fingerprint goes into the files)"
    )
    synth.add_argument("--count", type=int, required=True)
    synth.add_argument("--out", required=True, help="output folder")
    synth.add_argument("--prefix", default="synth-")
    synth.add_argument("--prompt-length", type=int, default=16)
    synth.add_argument("--kind", choices=["input-tuning", "prompt-tuning"], default="input-tuning")
    synth.add_argument("--dtype", choices=["float32", "bfloat16"], default="bfloat16", help="file dtype")
    show = sub.add_parser("inspect", help="validate an adapter file and print its config and metadata")
    show.add_argument("path")
    show.add_argument("--model", help="also check compatibility with this base")
    act = sub.add_parser(
        "activation", help="per input token, how much an input-tuning adapter changes its embedding"
    )
    act.add_argument(
        "--adapter", required=True, help="adapter .safetensors path, or a name in the demo's adapters"
    )
    act.add_argument("--input", required=True, help="the input text")
    act.add_argument("--model", help="base model folder (default: the embedded demo base)")
    act.add_argument("--top", type=int, help="show only the N most-changed tokens")
    act.add_argument("--json", action="store_true", help="print JSON")


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
    if args.adapters_command == "activation":
        return activation(args)
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
    import torch

    from adapters.testing import write_random_adapters

    if args.count < 1:
        raise InvalidParametersError(f"--count must be >= 1, got {args.count}")
    base = load_base(args.base, device="cpu")
    dtype = torch.bfloat16 if args.dtype == "bfloat16" else torch.float32
    write_random_adapters(
        base,
        args.count,
        args.out,
        prefix=args.prefix,
        prompt_length=args.prompt_length,
        kind=args.kind,
        dtype=dtype,
        progress=True,
    )
    print(f"wrote {args.count} {args.kind} adapters to {args.out}")
    return 0


def activation(args: argparse.Namespace) -> int:
    """Per token of --input, ``‖W2·act(W1·x)‖ / ‖x‖`` (the adapter's relative change), most-changed first."""
    from pathlib import Path

    from adapters import adapter_path
    from training.activation import token_changes

    from ..demo import default_model_and_adapters
    from ..settings import ServerSettings

    if args.top is not None and args.top < 1:
        raise InvalidParametersError(f"--top must be >= 1, got {args.top}")
    if not args.input.strip():
        raise InvalidParametersError("--input must be non-empty text")
    model = args.model
    path = Path(args.adapter)
    if model is None or not args.adapter.endswith(".safetensors"):
        demo_base, demo_adapters = default_model_and_adapters(ServerSettings().cache)
        model = model or str(demo_base)
        if not args.adapter.endswith(".safetensors"):
            path = adapter_path(demo_adapters, args.adapter)
    base = load_base(model, device="cpu", dtype="float32")
    weights = load_adapter(path, base.fingerprint, base.d_model)
    changes = token_changes(base, weights, args.input)
    ranked = sorted(changes, key=lambda c: c.change, reverse=True)[: args.top]
    if args.json:
        rows = [
            {"position": c.position, "token": c.token, "token_id": c.token_id, "change": c.change}
            for c in ranked
        ]
        print(json.dumps({"adapter": str(path), "tokens": rows}, indent=2, ensure_ascii=False))
        return 0
    print(f"{path.name}: relative change ||W2·act(W1·x)|| / ||x|| per input token, most-changed first")
    print(f"{'pos':>4}  {'change':>8}  token")
    for c in ranked:
        print(f"{c.position:>4}  {c.change:>8.3f}  {c.token!r}")
    return 0
