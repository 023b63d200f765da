"""What a training run leaves behind: an adapter file, or a fine-tuned model folder, with training facts."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch

from adapters import AdapterConfig, AdapterWeights, BaseModel, NotSafetensorsError, from_bytes, to_bytes
from adapters.fileformat import write_atomic

FINE_TUNED_METADATA = "inputtune_train.json"  # training facts next to a fine-tuned model's weights
_FILE_NAMES = {"prompt": "prompt", "w1": "mlp.w1", "b1": "mlp.b1", "w2": "mlp.w2", "b2": "mlp.b2"}


def adapter_weights(
    config: AdapterConfig, state: dict[str, torch.Tensor], metadata: dict[str, str]
) -> AdapterWeights:
    """An ``InputAdapter`` state dict (prompt, w1, b1, w2, b2) as float32 file tensors (prompt, mlp.w1, ...)."""
    return AdapterWeights(config, {_FILE_NAMES[k]: v.float() for k, v in state.items()}, dict(metadata))


def save_adapter_checked(weights: AdapterWeights, path: Path) -> None:
    """Write an adapter file only once its bytes load back (``adapters.from_bytes`` validates everything).

    ``adapters.fileformat`` takes a file whose first byte is 0x80 or whose first two bytes are "PK" for a
    pickle or a zip, but a valid safetensors file starts with its little-endian header length, so a
    header of 0x..80 or 0x..4B50 bytes trips it. Until that check looks at the header, a padding entry
    in the metadata moves the header length off those values.
    """
    for pad in range(4):
        if pad:
            padded = {**weights.metadata, "pad": " " * 8 * pad}
            weights = AdapterWeights(weights.config, weights.tensors, padded)
        data = to_bytes(weights)
        try:
            from_bytes(data, origin=str(path))
        except NotSafetensorsError:
            continue
        path.parent.mkdir(parents=True, exist_ok=True)
        write_atomic(path, data)
        return
    raise AssertionError(f"could not write a loadable adapter file at {path}")


def save_fine_tuned(
    base: BaseModel, state: dict[str, torch.Tensor], metadata: dict[str, str], out: Path
) -> None:
    """A Hugging Face folder (weights from ``state``, config, tokenizer) plus FINE_TUNED_METADATA."""
    out.mkdir(parents=True, exist_ok=True)
    base.model.save_pretrained(out, state_dict=dict(state))  # it pops tied weights from the dict it gets
    tokenizer: Any = base.tokenizer
    tokenizer.save_pretrained(out)
    (out / FINE_TUNED_METADATA).write_text(json.dumps(metadata, indent=2, sort_keys=True) + "\n")
