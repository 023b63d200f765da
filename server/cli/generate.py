"""`inputtune generate`: load the base (and one adapter), generate, print one line per input."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from adapters import AdaptedModel, InvalidInputError, adapter_path, load_adapter

from ..demo import resolve_model
from ..errors import SettingsError
from .options import (
    MODEL_FIELDS,
    add_generation_options,
    add_settings_options,
    generation_params,
    settings_from_args,
)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_settings_options(parser, only=MODEL_FIELDS)
    parser.add_argument(
        "--adapter", help="adapter name in --adapter-dir (or a .safetensors path); none = base model"
    )
    add_generation_options(parser)
    parser.add_argument("texts", nargs="+", help="input texts; '-' reads one input per line from stdin")


def run(args: argparse.Namespace) -> int:
    params = generation_params(args)
    settings = settings_from_args(args, only=MODEL_FIELDS)  # --max-new-tokens is a decoding option here
    texts = [line.rstrip("\n") for line in sys.stdin] if args.texts == ["-"] else list(args.texts)
    if not texts or any(not t.strip() for t in texts):
        raise InvalidInputError("every input must be non-empty text")
    model_path, adapter_dir = resolve_model(settings.model, settings.adapter_dir, settings.cache)
    model = AdaptedModel.load(model_path, device=settings.device, dtype=settings.dtype, num_slots=1)
    slot = 0
    if args.adapter:
        if args.adapter.endswith(".safetensors"):
            path = Path(args.adapter)
        elif adapter_dir is None:
            raise SettingsError("--adapter NAME needs --adapter-dir (or pass a path to a .safetensors file)")
        else:
            path = adapter_path(adapter_dir, args.adapter)
        model.load_adapter(1, load_adapter(path), name=args.adapter)
        slot = 1
    for out in model.generate(texts, [slot] * len(texts), params):
        print(" ".join(out.text.splitlines()))  # one line per input, whatever the model wrote
    return 0
