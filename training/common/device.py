"""The device of a training run: an ``accelerate.Accelerator`` (one GPU per process under
``accelerate launch``/``torchrun``, else this process's GPU or the CPU)."""

from __future__ import annotations

import torch
from accelerate import Accelerator

from training.errors import ConfigError


def make_accelerator(device: str = "auto") -> Accelerator:
    """``auto``/``cuda``: the GPU of this process (one per process under ``accelerate launch``) or the CPU;
    ``cpu``: the CPU. Pick a GPU with CUDA_VISIBLE_DEVICES."""
    if device == "cpu":
        return Accelerator(cpu=True)
    if device not in ("auto", "cuda"):
        raise ConfigError(
            f"--device {device!r}: use auto, cuda or cpu (pick a GPU with CUDA_VISIBLE_DEVICES)"
        )
    if device == "cuda" and not torch.cuda.is_available():
        raise ConfigError("--device cuda was asked for but no CUDA GPU is visible: use --device cpu")
    return Accelerator()


def same_device(a: torch.device, b: torch.device) -> bool:
    """cuda and cuda:0 are the same device when 0 is the current one."""

    def index(d: torch.device) -> int:
        return d.index if d.index is not None else (torch.cuda.current_device() if d.type == "cuda" else 0)

    return a.type == b.type and index(a) == index(b)
