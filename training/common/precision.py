"""The one autocast policy: bf16 autocast where a trainer asks for it, plain float32 elsewhere."""

from __future__ import annotations

import contextlib

import torch


def bf16_autocast(
    device: torch.device, enabled: bool = True, *, cuda_only: bool
) -> contextlib.AbstractContextManager:
    """bf16 autocast on ``device`` when ``enabled`` (and, with ``cuda_only``, the device is a GPU).

    Master weights stay float32 either way. The two trainers differ on purpose:
    - the adapter trainer autocasts on any device whenever ``--bf16`` is given or the frozen base is
      bf16 (its matmuls need it): ``enabled=cfg.bf16 or base is bf16, cuda_only=False``;
    - pretraining always autocasts on a GPU and never on a CPU, where bf16 autocast is slower than
      float32: ``cuda_only=True``.
    """
    if not enabled or (cuda_only and device.type != "cuda"):
        return contextlib.nullcontext()
    return torch.autocast(device.type, dtype=torch.bfloat16)
