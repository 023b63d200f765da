"""Resumable training checkpoints: one ``state.pt`` per checkpoint folder, written atomically.

It holds the trainable state (the adapter's tensors, or the whole model for fine-tuning), the optimiser,
the scheduler, the step, the torch RNG states (dropout), the best adapter so far and the bookkeeping of
early stopping. The data order needs no state: it is a function of the seed and the step. The file is
our own and read with ``torch.load(weights_only=True)``: tensors and plain containers only.
"""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

import torch

from adapters.io import write_atomic

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


def save_checkpoint(folder: Path, state: dict[str, Any]) -> Path:
    """Write ``folder/state.pt`` atomically (a crash mid-write leaves the previous checkpoint)."""
    folder.mkdir(parents=True, exist_ok=True)
    buffer = io.BytesIO()
    torch.save({"version": CHECKPOINT_VERSION, **state}, buffer)
    path = folder / STATE_FILE
    write_atomic(path, buffer.getvalue())
    return path


def load_checkpoint(folder: str | Path) -> dict[str, Any]:
    """Read a checkpoint folder written by ``save_checkpoint``; errors say what to pass instead."""
    path = Path(folder) / STATE_FILE
    if not path.is_file():
        raise FileNotFoundError(
            f"no checkpoint at {path}: --resume takes the checkpoint folder a run writes "
            "(<out>.ckpt by default, see --save-every)"
        )
    state = torch.load(path, map_location="cpu", weights_only=True)
    if state.get("version") != CHECKPOINT_VERSION:
        raise ValueError(
            f"{path} has checkpoint version {state.get('version')}, expected {CHECKPOINT_VERSION}"
        )
    return state
