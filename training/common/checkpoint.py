"""Resumable training checkpoints, one format for both trainers: a folder holding ``state.pt`` and any
text files a trainer adds (pretraining's ``preset.json``).

``state.pt`` is a versioned dict of tensors and plain containers, read with
``torch.load(weights_only=True)``; each trainer decides what goes in it (see ``Trainer.save_checkpoint``
and ``training.pretrain.loop``), with the torch RNG states of ``rng_state`` so that dropout continues
exactly. Every file is written atomically (``adapters.io.write_atomic``), ``state.pt`` last: a crash
mid-write leaves the previous checkpoint readable.
"""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

import torch

from adapters.io import write_atomic
from training.errors import CheckpointError

STATE_FILE = "state.pt"
CHECKPOINT_VERSION = 1


def rng_state() -> dict[str, Any]:
    state: dict[str, Any] = {"torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def restore_rng(state: dict[str, Any]) -> None:
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def cpu_state_dict(module: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().to("cpu", copy=True) for k, v in module.state_dict().items()}


def save_checkpoint(folder: Path, state: dict[str, Any], files: dict[str, str] | None = None) -> Path:
    """Write ``folder/state.pt`` (``state`` plus the format version) and the text ``files``, each atomically."""
    folder.mkdir(parents=True, exist_ok=True)
    for name, text in (files or {}).items():
        write_atomic(folder / name, text.encode("utf-8"))
    buffer = io.BytesIO()
    torch.save({"version": CHECKPOINT_VERSION, **state}, buffer)
    path = folder / STATE_FILE
    write_atomic(path, buffer.getvalue())
    return path


def load_checkpoint(folder: str | Path, hint: str) -> dict[str, Any]:
    """Read the ``state.pt`` of a folder written by ``save_checkpoint``.

    Raises CheckpointError when there is none (the message ends with ``hint``: what to pass instead)
    or when it has another format version.
    """
    path = Path(folder) / STATE_FILE
    if not path.is_file():
        raise CheckpointError(f"no checkpoint at {path}: {hint}")
    state = torch.load(path, map_location="cpu", weights_only=True)
    if state.get("version") != CHECKPOINT_VERSION:
        raise CheckpointError(
            f"{path} has checkpoint version {state.get('version')}, expected {CHECKPOINT_VERSION}"
        )
    return state
