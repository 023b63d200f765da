"""Adapter files on disk: names, paths, atomic writes, reading and listing.

A name is ``^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$``: it has no separator and no leading dot, so
``adapter_path`` can never leave the adapter folder. Files are written atomically (a temporary
file in the same folder, fsync, rename), so a reader sees the old file or the new one, never half.
"""

from __future__ import annotations

import errno
import os
import re
import struct
import tempfile
from pathlib import Path

import torch

from .config import AdapterConfig
from .errors import (
    AdapterError,
    AdapterNotFoundError,
    AdapterUnreadableError,
    AdapterWriteError,
    InvalidAdapterNameError,
    StorageFullError,
)
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
    over the target: readers see the old content or the new one, never a part. A failure leaves the
    old content and no temporary file: StorageFullError (disk or quota full) or AdapterWriteError."""
    tmp = None
    try:
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException as e:
        if tmp is not None:
            Path(tmp).unlink(missing_ok=True)
        if isinstance(e, OSError):
            raise write_error(e, path.name) from e
        raise


def write_error(error: OSError, what: str) -> AdapterWriteError:
    """The error of a failed write, named by what was written (never by its folder's path)."""
    if error.errno in (errno.ENOSPC, errno.EDQUOT):
        return StorageFullError(f"{what} could not be written: no space left on the adapter folder's disk")
    reason = {errno.EACCES: "not writable", errno.EPERM: "not writable", errno.EROFS: "read-only"}
    return AdapterWriteError(
        f"{what} could not be written: the adapter folder is {reason.get(error.errno or 0, 'failing')} "
        f"({error.strerror})"
    )


def read_error(error: OSError, what: str) -> AdapterError:
    """The error of a failed read of an adapter file, named by ``what`` (never by its path)."""
    if isinstance(error, FileNotFoundError):
        return AdapterNotFoundError(f"no {what}")
    if isinstance(error, IsADirectoryError):
        return AdapterUnreadableError(f"{what} is a folder, not a file")
    return AdapterUnreadableError(f"{what} cannot be read ({error.strerror or type(error).__name__})")


def read_config(path: str | Path) -> tuple[AdapterConfig, dict[str, str]]:
    """Config and metadata from a file's header alone, without reading its tensors (for listings)."""
    path = Path(path)
    try:
        with path.open("rb") as f:
            head = f.read(8)
            if len(head) == 8:
                (size,) = struct.unpack("<Q", head)
                head += f.read(min(size, MAX_HEADER_BYTES))
    except OSError as e:
        raise read_error(e, f"adapter file {path.name}") from e
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
    except OSError as e:
        raise read_error(e, f"adapter file {path}") from e
    weights = from_bytes(data, origin=f"adapter file {path.name}")
    if fingerprint is not None and d_model is not None:
        check_compatible(weights.config, fingerprint, d_model, origin=f"adapter {path.stem!r}")
    return weights


def list_adapter_names(adapter_dir: str | Path) -> list[str]:
    """Names of the adapter files in a folder (sorted; temporary and hidden files left out). A folder
    that does not exist holds none; one that cannot be read is an AdapterUnreadableError."""
    try:
        entries = os.listdir(adapter_dir)
    except FileNotFoundError:
        return []
    except OSError as e:
        raise AdapterUnreadableError(
            f"the adapter folder cannot be read ({e.strerror or type(e).__name__})"
        ) from e
    return sorted(n[: -len(SUFFIX)] for n in entries if n.endswith(SUFFIX) and not n.startswith("."))
