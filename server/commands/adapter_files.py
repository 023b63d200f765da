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
