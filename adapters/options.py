"""Command-line options derived from a config dataclass: one option per field, so a default, a type
or a help text is written once, on the field (``field(metadata={"help": ..., "group": ...})``).

Like ``transformers.HfArgumentParser``, kept small: ``int``, ``float``, ``str``, ``bool``
(``--x/--no-x``), their ``| None`` forms, ``tuple[str, ...]`` (a repeatable option), choices through
``metadata["choices"]``, and ``metadata["group"]`` for ``--help`` sections. Fields without a default
are required options.
"""

from __future__ import annotations

import argparse
import dataclasses
import types
import typing
from collections.abc import Iterable
from typing import Any

_SCALARS = (int, float, str)


def _is_tuple(annotation: Any) -> bool:
    return typing.get_origin(annotation) is tuple


def _scalar_type(annotation: Any) -> type:
    """int / float / str / bool of an annotation, unwrapping ``X | None`` and ``tuple[X, ...]``."""
    if annotation in (*_SCALARS, bool):
        return annotation
    if _is_tuple(annotation):
        return _scalar_type(typing.get_args(annotation)[0])
    origin = typing.get_origin(annotation)
    if origin in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(annotation) if a is not type(None)]
        if len(args) == 1:
            return _scalar_type(args[0])
    if origin is typing.Literal:
        return type(typing.get_args(annotation)[0])
    raise TypeError(f"no command-line option for a field of type {annotation!r}")


def flag(name: str) -> str:
    """``max_new_tokens`` -> ``--max-new-tokens``."""
    return "--" + name.replace("_", "-")


def add_dataclass_options(
    parser: argparse.ArgumentParser,
    cls: type,
    *,
    only: Iterable[str] | None = None,
    exclude: Iterable[str] = (),
    defaults: dict[str, Any] | None = None,
) -> list[str]:
    """Add one option per field of dataclass ``cls`` (``only`` those, minus ``exclude``), with the
    field's default (or ``defaults[name]``). Returns the field names added."""
    hints = typing.get_type_hints(cls)
    wanted = set(only) if only is not None else None
    skip = set(exclude)
    groups: dict[str, Any] = {}
    added = []
    for f in dataclasses.fields(cls):
        if (wanted is not None and f.name not in wanted) or f.name in skip or not f.init:
            continue
        kind = _scalar_type(hints[f.name])
        meta = f.metadata
        target = parser
        if "group" in meta:
            target = groups.setdefault(meta["group"], parser.add_argument_group(meta["group"]))
        has_default = f.default is not dataclasses.MISSING or f.default_factory is not dataclasses.MISSING
        default = (defaults or {}).get(
            f.name,
            f.default if f.default is not dataclasses.MISSING else None,
        )
        text = meta.get("help", "")
        kwargs: dict[str, Any] = {"dest": f.name}
        if kind is bool:
            kwargs.update(action=argparse.BooleanOptionalAction, default=bool(default))
        elif _is_tuple(hints[f.name]):
            kwargs.update(action="append", type=kind, default=None)
            text = f"{text} (repeat the option for several)" if text else None
        else:
            kwargs.update(type=kind, default=default)
            if "choices" in meta:
                kwargs["choices"] = list(meta["choices"])
            if not has_default and f.name not in (defaults or {}):
                kwargs["required"] = True
            if default is not None:
                text = f"{text} (default {default})" if text else f"default {default}"
        target.add_argument(flag(f.name), help=text or None, **kwargs)
        added.append(f.name)
    return added


def dataclass_from_args(cls: type, args: argparse.Namespace, **overrides: Any) -> Any:
    """Build ``cls`` from the parsed options that name its fields (plus ``overrides``)."""
    hints = typing.get_type_hints(cls)
    values = {}
    for f in dataclasses.fields(cls):
        if f.init and hasattr(args, f.name):
            value = getattr(args, f.name)
            if _is_tuple(hints[f.name]):
                if value is None:
                    continue  # not given: the field's default
                value = tuple(value)
            values[f.name] = value
    return cls(**(values | overrides))
