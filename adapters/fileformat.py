"""The adapter file format: bytes <-> ``AdapterWeights``, validated.

One ``<name>.safetensors`` holds the tensors and the config. The config is JSON in the
safetensors metadata under ``inputtune.config``; free-form training facts go under
``inputtune.metadata``. Nothing here ever unpickles anything: bytes are parsed as safetensors
or rejected, each problem with its own error. Files on disk (names, paths, atomic writes) are
``io.py``'s.
"""

from __future__ import annotations

import itertools
import json
import re
import struct

import torch
from safetensors import SafetensorError
from safetensors.torch import load as st_load
from safetensors.torch import save as st_save

from .config import FORMAT_VERSION, AdapterConfig
from .errors import (
    AdapterConfigError,
    IncompatibleAdapterError,
    MissingMetadataError,
    NonFiniteWeightsError,
    NotSafetensorsError,
    TensorMismatchError,
    UnsupportedFormatVersionError,
)
from .module import AdapterWeights, expected_shapes

META_FORMAT = "inputtune.format_version"
META_CONFIG = "inputtune.config"
META_EXTRA = "inputtune.metadata"
ALLOWED_DTYPES = (torch.float32, torch.bfloat16, torch.float16)
MAX_HEADER_BYTES = 1024 * 1024  # an adapter's header (a few tensors, its config, training facts) is KBs
MAX_HEADER_DEPTH = 32  # JSON nesting: safetensors headers are 3 deep; bounded before any parse
_STRINGS = re.compile(rb'"(?:[^"\\]|\\.)*"')
_NOT_BRACKETS = bytes(b for b in range(256) if b not in b"[]{}")


def to_bytes(weights: AdapterWeights, dtype: torch.dtype | None = None) -> bytes:
    """Serialise an adapter; ``dtype`` casts the tensors (default: keep their dtype)."""
    tensors = {
        k: v.detach().to(device="cpu", dtype=dtype or v.dtype).contiguous()
        for k, v in weights.tensors.items()
    }
    metadata = {
        META_FORMAT: str(weights.config.format_version),
        META_CONFIG: weights.config.to_json(),
        META_EXTRA: json.dumps(weights.metadata, sort_keys=True),
    }
    return st_save(tensors, metadata=metadata)


def read_header(data: bytes, origin: str) -> dict:
    """The header of a safetensors file's bytes (a JSON object), parsed by us so as to say precisely
    what is wrong with a bad file.

    The pickle/zip diagnosis is made only once parsing failed: a valid file starts with its
    header length, whose first byte can be 0x80 (or spell 'PK') like a pickle's would.
    """
    try:
        return _parse_header(data, origin)
    except NotSafetensorsError:
        if data[:1] == b"\x80" or data[:2] == b"PK":
            raise NotSafetensorsError(
                f"{origin} is a pickle or a torch.save zip, not safetensors: inputtune never unpickles "
                "files; convert the weights with safetensors.torch.save_file on a trusted machine"
            ) from None
        raise


def _parse_header(data: bytes, origin: str) -> dict:
    if len(data) < 8:
        raise NotSafetensorsError(f"{origin} is {len(data)} bytes long, too short for a safetensors file")
    (header_len,) = struct.unpack("<Q", data[:8])
    if header_len > min(len(data) - 8, MAX_HEADER_BYTES):
        raise NotSafetensorsError(
            f"{origin} is not a valid safetensors file (header length {header_len} exceeds the "
            f"{len(data)}-byte file): it may be truncated or not safetensors at all"
        )
    raw = data[8 : 8 + header_len]
    depth = json_depth(raw)
    if depth > MAX_HEADER_DEPTH:
        raise NotSafetensorsError(
            f"{origin} is not an adapter file: its header nests {depth} levels deep (at most {MAX_HEADER_DEPTH})"
        )
    try:
        header = json.loads(raw)
    except (UnicodeDecodeError, json.JSONDecodeError, RecursionError) as e:
        raise NotSafetensorsError(f"{origin} is not a safetensors file: its header is not JSON ({e})") from e
    if not isinstance(header, dict):
        raise NotSafetensorsError(f"{origin} is not a safetensors file: its header is not a JSON object")
    return header


def json_depth(raw: bytes) -> int:
    """How deep JSON text nests its arrays and objects (strings left out), without parsing it."""
    brackets = _STRINGS.sub(b"", raw).translate(None, _NOT_BRACKETS)
    steps = (1 if b in b"[{" else -1 for b in brackets)
    return max(itertools.accumulate(steps, initial=0))


def parse_metadata(metadata: object, origin: str) -> tuple[AdapterConfig, dict[str, str]]:
    """The config and training facts of a header's ``__metadata__`` (safetensors: string values)."""
    if metadata is None:
        metadata = {}
    if not isinstance(metadata, dict) or not all(isinstance(v, str) for v in metadata.values()):
        raise MissingMetadataError(
            f"{origin}: __metadata__ must be a JSON object of strings (safetensors' rule), got "
            f"{type(metadata).__name__ if not isinstance(metadata, dict) else 'other values'}"
        )
    if META_CONFIG not in metadata or META_FORMAT not in metadata:
        raise MissingMetadataError(
            f"{origin} is a safetensors file without inputtune metadata ({META_FORMAT}, {META_CONFIG}): "
            "write adapters with `inputtune train` or adapters.save_adapter; import PEFT prompts with "
            "`inputtune adapters import-peft`"
        )
    try:
        version = int(metadata[META_FORMAT])
    except ValueError as e:
        raise UnsupportedFormatVersionError(f"{origin} has format version {metadata[META_FORMAT]!r}") from e
    if version != FORMAT_VERSION:
        raise UnsupportedFormatVersionError(
            f"{origin} has format version {version} but this inputtune reads version {FORMAT_VERSION}: "
            + ("upgrade inputtune" if version > FORMAT_VERSION else "re-save it with this version")
        )
    config = AdapterConfig.from_json(metadata[META_CONFIG])
    if config.format_version != version:
        raise AdapterConfigError(
            f"{origin}: config says format_version {config.format_version}, the file says {version}"
        )
    try:
        extra = json.loads(metadata.get(META_EXTRA, "{}"))
    except (json.JSONDecodeError, RecursionError) as e:
        raise AdapterConfigError(f"{origin}: {META_EXTRA} is not JSON ({e})") from e
    if not isinstance(extra, dict):
        raise AdapterConfigError(f"{origin}: {META_EXTRA} must be a JSON object")
    return config, {str(k): str(v) for k, v in extra.items()}


def from_bytes(data: bytes, origin: str = "adapter file") -> AdapterWeights:
    """Parse and validate an adapter file's bytes: format, config, tensor names/shapes/dtypes, finiteness."""
    header = read_header(data, origin)
    config, extra = parse_metadata(header.get("__metadata__"), origin)
    try:
        tensors = st_load(data)
    except (SafetensorError, ValueError, RuntimeError) as e:
        raise NotSafetensorsError(
            f"{origin} could not be read as safetensors (truncated or corrupt?): {e}"
        ) from e
    _check_tensors(tensors, config, origin)
    return AdapterWeights(config, tensors, extra)


def _check_tensors(tensors: dict[str, torch.Tensor], config: AdapterConfig, origin: str) -> None:
    expected = expected_shapes(config)
    missing, unexpected = sorted(set(expected) - set(tensors)), sorted(set(tensors) - set(expected))
    if missing or unexpected:
        raise TensorMismatchError(
            f"{origin} is a {config.kind} adapter but its tensors do not match: missing {missing}, "
            f"unexpected {unexpected}; expected exactly {sorted(expected)}"
        )
    for name, shape in expected.items():
        tensor = tensors[name]
        if tuple(tensor.shape) != shape:
            raise TensorMismatchError(
                f"{origin}: tensor {name!r} has shape {tuple(tensor.shape)} but the config "
                f"(d_model={config.d_model}, prompt_length={config.prompt_length}, "
                f"hidden_size={config.hidden_size}) needs {shape}"
            )
        if tensor.dtype not in ALLOWED_DTYPES:
            raise TensorMismatchError(
                f"{origin}: tensor {name!r} has dtype {tensor.dtype}; use float32, bfloat16 or float16"
            )
        if not bool(torch.isfinite(tensor).all()):
            raise NonFiniteWeightsError(
                f"{origin}: tensor {name!r} holds NaN or infinite values: the training run diverged; "
                "retrain with a lower learning rate or use an earlier checkpoint"
            )


def check_compatible(config: AdapterConfig, fingerprint: str, d_model: int, origin: str = "adapter") -> None:
    """Refuse an adapter made for another base (width first, then fingerprint)."""
    if config.d_model != d_model:
        raise IncompatibleAdapterError(
            f"{origin} was trained for d_model={config.d_model} but the base model has d_model={d_model}: "
            "retrain it on this base or load the base it was made for"
        )
    if config.base_fingerprint and config.base_fingerprint != fingerprint:
        base = f" ({config.base_model})" if config.base_model else ""
        raise IncompatibleAdapterError(
            f"{origin} was trained on another base model{base} (fingerprint {config.base_fingerprint}, "
            f"this base is {fingerprint}): retrain it on this base or serve the base it was made for"
        )
