"""The learning-rate schedule of both trainers: linear warmup, then a decay to a final fraction."""

from __future__ import annotations

import math

SCHEDULES = ("linear", "cosine", "constant")


def lr_factor(
    step: int, warmup: int, total: int, final_fraction: float = 0.0, schedule: str = "cosine"
) -> float:
    """Multiplier of the peak learning rate at optimiser step ``step`` (0-based).

    Linear warmup over ``warmup`` steps (step 0 gets 1/warmup), then ``schedule``: "linear" or "cosine"
    decay from 1 to ``final_fraction`` at ``total`` (and ``final_fraction`` after it), or "constant" 1.
    The adapter trainer decays to 0; pretraining to its preset's ``final_lr_fraction``.
    """
    if step < warmup:
        return (step + 1) / warmup
    if schedule == "constant":
        return 1.0
    progress = min(1.0, (step - warmup) / max(1, total - warmup))
    if schedule == "cosine":
        decay = 0.5 * (1.0 + math.cos(math.pi * progress))
    elif schedule == "linear":
        decay = 1.0 - progress
    else:
        raise ValueError(f"unknown schedule shape {schedule!r}: use one of {', '.join(SCHEDULES)}")
    return final_fraction + (1.0 - final_fraction) * decay
