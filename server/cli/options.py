"""Options every server-side command shares, derived from where their rules live: ``ServerSettings``
for the model and the server (also ``INPUTTUNE_*`` variables), ``GenerationParams`` for decoding."""

from __future__ import annotations

import argparse
import typing
from collections.abc import Iterable

from adapters import GenerationParams
from adapters.options import add_dataclass_options, dataclass_from_args, flag

from ..settings import SECRET_FIELDS, ServerSettings, load_settings

MODEL_FIELDS = ("model", "adapter_dir", "device", "dtype")


def add_settings_options(parser: argparse.ArgumentParser, only: Iterable[str] | None = None) -> None:
    """One option per settings field (``only`` those); an option left out keeps the environment's
    value or the default, so ``--help`` shows both."""
    wanted = set(only) if only is not None else None
    for name, field in ServerSettings.model_fields.items():
        if name in SECRET_FIELDS or (wanted is not None and name not in wanted):
            continue
        default = field.get_default(call_default_factory=True)
        help_text = f"{field.description} (env INPUTTUNE_{name.upper()}, default {default!r})"
        if field.annotation is bool:
            parser.add_argument(
                flag(name), action=argparse.BooleanOptionalAction, default=argparse.SUPPRESS, help=help_text
            )
        else:
            is_list = typing.get_origin(field.annotation) is list
            parser.add_argument(
                flag(name),
                default=argparse.SUPPRESS,
                metavar="NAMES" if is_list else None,
                help=help_text + (" comma-separated" if is_list else ""),
            )


def settings_from_args(args: argparse.Namespace, only: Iterable[str] | None = None) -> ServerSettings:
    """The settings: options given on the command line (of the fields ``only``, when a command has
    options of its own with settings' names), then ``INPUTTUNE_*`` variables, then defaults."""
    names = ServerSettings.model_fields if only is None else only
    return load_settings(**{name: getattr(args, name) for name in names if hasattr(args, name)})


def add_generation_options(parser: argparse.ArgumentParser, only: Iterable[str] | None = None) -> None:
    add_dataclass_options(
        parser, GenerationParams, only=only, exclude=("logprobs",)
    )  # a line of text per input


def generation_params(args: argparse.Namespace) -> GenerationParams:
    return dataclass_from_args(GenerationParams, args)
