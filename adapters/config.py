"""Adapter configuration: what an adapter file says about itself.

The config travels as JSON inside the safetensors metadata. It is validated on
construction; unknown keys are an error, not ignored, so a typo in a hand-written
config cannot silently change the adapter.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from typing import Any, Literal

from .errors import AdapterConfigError

FORMAT_VERSION = 1
KINDS = ("input-tuning", "prompt-tuning")
ACTIVATIONS = ("relu", "gelu", "silu", "tanh")  # each has act(0) == 0: zero-padding stays exact

Kind = Literal["input-tuning", "prompt-tuning"]


@dataclass(frozen=True)
class AdapterConfig:
    """What an adapter is and which base it belongs to.

    kind: ``input-tuning`` (soft prompt + input MLP) or ``prompt-tuning`` (soft prompt only).
    d_model: width of the base model's embeddings.
    prompt_length: number of soft-prompt vectors P prepended to the input (0 allowed).
    hidden_size: inner size H of the input MLP; defaults to 2 * d_model; 0 for prompt-tuning.
    activation: the MLP's non-linearity.
    base_model: free-text name of the base (for people; compatibility uses the fingerprint).
    base_fingerprint: ``adapters.base.fingerprint`` of the base the adapter was trained on.
    format_version: version of this file format.
    """

    kind: Kind
    d_model: int
    prompt_length: int
    hidden_size: int | None = None
    activation: str = "relu"
    base_model: str = ""
    base_fingerprint: str = ""
    format_version: int = FORMAT_VERSION
    extra: dict[str, Any] = field(default_factory=dict, compare=False)

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise AdapterConfigError(f"adapter kind {self.kind!r} is unknown: use one of {', '.join(KINDS)}")
        for name in ("d_model", "prompt_length"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool):
                raise AdapterConfigError(f"{name} must be an integer, got {value!r}")
        if self.d_model < 1:
            raise AdapterConfigError(f"d_model must be >= 1, got {self.d_model}")
        if not 0 <= self.prompt_length <= 4096:
            raise AdapterConfigError(f"prompt_length must be in [0, 4096], got {self.prompt_length}")
        if self.kind == "prompt-tuning":
            if self.hidden_size not in (None, 0):
                raise AdapterConfigError(
                    f"a prompt-tuning adapter has no MLP, so hidden_size must be 0, got {self.hidden_size}"
                )
            object.__setattr__(self, "hidden_size", 0)
        else:
            if self.hidden_size is None:
                object.__setattr__(self, "hidden_size", 2 * self.d_model)
            if (
                not isinstance(self.hidden_size, int)
                or isinstance(self.hidden_size, bool)
                or self.hidden_size < 1
            ):
                raise AdapterConfigError(f"hidden_size must be a positive integer, got {self.hidden_size!r}")
        if self.activation not in ACTIVATIONS:
            raise AdapterConfigError(
                f"activation {self.activation!r} is unknown: use one of {', '.join(ACTIVATIONS)}"
            )
        if not isinstance(self.format_version, int) or self.format_version < 1:
            raise AdapterConfigError(
                f"format_version must be a positive integer, got {self.format_version!r}"
            )
        if not isinstance(self.extra, dict):
            raise AdapterConfigError("extra must be a JSON object")
        for name in ("base_model", "base_fingerprint"):
            if not isinstance(getattr(self, name), str):
                raise AdapterConfigError(f"{name} must be a string, got {getattr(self, name)!r}")

    @property
    def has_mlp(self) -> bool:
        return self.kind == "input-tuning"

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), sort_keys=True)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> AdapterConfig:
        if not isinstance(data, dict):
            raise AdapterConfigError(f"adapter config must be a JSON object, got {type(data).__name__}")
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise AdapterConfigError(f"unknown adapter config keys {unknown}: known keys are {sorted(known)}")
        missing = [k for k in ("kind", "d_model", "prompt_length") if k not in data]
        if missing:
            raise AdapterConfigError(f"adapter config lacks required keys {missing}")
        return cls(**data)

    @classmethod
    def from_json(cls, text: str) -> AdapterConfig:
        try:
            data = json.loads(text)
        except (json.JSONDecodeError, RecursionError) as e:
            raise AdapterConfigError(f"adapter config is not valid JSON: {e}") from e
        return cls.from_dict(data)

    def replace(self, **changes: Any) -> AdapterConfig:
        return dataclasses.replace(self, **changes)
