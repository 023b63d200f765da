"""Adapter files on disk: names, paths, atomic writes, reading and listing.

A name is ``^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$``: it has no separator and no leading dot, so
``adapter_path`` can never leave the adapter folder. Files are written atomically (a temporary
file in the same folder, fsync, rename), so a reader sees the old file or the new one, never half.
"""

from __future__ import annotations

import os
import re
import struct
import tempfile
from pathlib import Path

import torch

from .config import AdapterConfig
from .errors import AdapterNotFoundError, InvalidAdapterNameError
from .fileformat import MAX_HEADER_BYTES, check_compatible, from_bytes, parse_metadata, read_header, to_bytes
from .module import AdapterWeights

SUFFIX = ".safetensors"
NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")


def validate_name(name: str) -> str:
    """Adapter names are ``^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$``: they cannot leave the adapter folder."""
    if not isinstance(name, str) or not NAME_RE.fullmatch(name) or name.endswith(SUFFIX):
        raise InvalidAdapterNameError(
            f"invalid adapter name {name!r}: use 1-128 letters, digits, '.', '_' or '-', starting with a "
            "letter or digit, without the .safetensors suffix"
        )
    return name


def adapter_path(adapter_dir: str | Path, name: str) -> Path:
    """The file of adapter ``name`` inside ``adapter_dir``. A valid name has no separator and no
    leading dot, so the path cannot leave the folder; the file itself may be a symlink (as
    mounted config maps and secrets are)."""
    return Path(adapter_dir).absolute() / (validate_name(name) + SUFFIX)


def save_adapter(weights: AdapterWeights, path: str | Path, dtype: torch.dtype | None = None) -> Path:
    """Write atomically: a temporary file in the same folder, fsync, then rename over the target."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    write_atomic(path, to_bytes(weights, dtype))
    return path


def write_atomic(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` through a temporary file in the same folder, fsync'd, then renamed
    over the target: readers see the old content or the new one, never a part."""
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def read_config(path: str | Path) -> tuple[AdapterConfig, dict[str, str]]:
    """Config and metadata from a file's header alone, without reading its tensors (for listings)."""
    path = Path(path)
    try:
        with path.open("rb") as f:
            head = f.read(8)
            if len(head) == 8:
                (size,) = struct.unpack("<Q", head)
                head += f.read(min(size, MAX_HEADER_BYTES))
    except FileNotFoundError as e:
        raise AdapterNotFoundError(f"no adapter file at {path}") from e
    header = read_header(head, f"adapter file {path.name}")
    config, extra = parse_metadata(header.get("__metadata__") or {}, f"adapter file {path.name}")
    return config, extra


def load_adapter(
    path: str | Path, fingerprint: str | None = None, d_model: int | None = None
) -> AdapterWeights:
    """Read and validate an adapter file; with a fingerprint and d_model also check it fits that base."""
    path = Path(path)
    try:
        data = path.read_bytes()
    except FileNotFoundError as e:
        raise AdapterNotFoundError(f"no adapter file at {path}") from e
    except IsADirectoryError as e:
        raise AdapterNotFoundError(f"{path} is a folder, not an adapter file") from e
    weights = from_bytes(data, origin=f"adapter file {path.name}")
    if fingerprint is not None and d_model is not None:
        check_compatible(weights.config, fingerprint, d_model, origin=f"adapter {path.stem!r}")
    return weights


def list_adapter_names(adapter_dir: str | Path) -> list[str]:
    """Names of the adapter files in a folder (sorted; temporary and hidden files left out)."""
    folder = Path(adapter_dir)
    if not folder.is_dir():
        return []
    return sorted(p.name[: -len(SUFFIX)] for p in folder.glob(f"*{SUFFIX}") if not p.name.startswith("."))
