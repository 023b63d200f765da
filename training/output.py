"""What a training run leaves behind: an adapter file, or a fine-tuned model folder, with training facts."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch

from adapters import AdapterConfig, AdapterWeights, BaseModel

FINE_TUNED_METADATA = "inputtune_train.json"  # training facts next to a fine-tuned model's weights
_FILE_NAMES = {"prompt": "prompt", "w1": "mlp.w1", "b1": "mlp.b1", "w2": "mlp.w2", "b2": "mlp.b2"}


def adapter_weights(
    config: AdapterConfig, state: dict[str, torch.Tensor], metadata: dict[str, str]
) -> AdapterWeights:
    """An ``InputAdapter`` state dict (prompt, w1, b1, w2, b2) as float32 file tensors (prompt, mlp.w1, ...)."""
    return AdapterWeights(config, {_FILE_NAMES[k]: v.float() for k, v in state.items()}, dict(metadata))


def save_fine_tuned(
    base: BaseModel, state: dict[str, torch.Tensor], metadata: dict[str, str], out: Path
) -> None:
    """A Hugging Face folder (weights from ``state``, config, tokenizer) plus FINE_TUNED_METADATA."""
    out.mkdir(parents=True, exist_ok=True)
    base.model.save_pretrained(out, state_dict=dict(state))  # it pops tied weights from the dict it gets
    tokenizer: Any = base.tokenizer
    tokenizer.save_pretrained(out)
    (out / FINE_TUNED_METADATA).write_text(json.dumps(metadata, indent=2, sort_keys=True) + "\n")
