"""Import soft prompts trained with Hugging Face PEFT (prompt tuning) into the inputtune format."""

from __future__ import annotations

import json
from pathlib import Path

from safetensors import SafetensorError
from safetensors.torch import load_file

from .config import AdapterConfig
from .errors import AdapterFormatError, AdapterNotFoundError
from .module import AdapterWeights

PEFT_TENSOR = "prompt_embeddings"


def import_peft_prompt(
    folder: str | Path, base_model: str = "", base_fingerprint: str = ""
) -> AdapterWeights:
    """Read a PEFT prompt-tuning folder (adapter_config.json + adapter_model.safetensors).

    PEFT stores ``num_virtual_tokens * num_transformer_submodules`` rows; for encoder-decoder
    models PEFT's prompt tuning feeds only the first ``num_virtual_tokens`` rows to the
    encoder, so those are the prompt. Returns a prompt-tuning adapter.
    """
    folder = Path(folder)
    config_path, weights_path = folder / "adapter_config.json", folder / "adapter_model.safetensors"
    for path in (config_path, weights_path):
        if not path.is_file():
            hint = (
                " (PEFT's .bin files are pickles: re-save with safe_serialization=True)"
                if path == weights_path
                else ""
            )
            raise AdapterNotFoundError(f"{folder} is not a PEFT adapter folder: {path.name} is missing{hint}")
    try:
        peft_config = json.loads(config_path.read_text())
    except json.JSONDecodeError as e:
        raise AdapterFormatError(f"{config_path} is not valid JSON: {e}") from e
    peft_type = peft_config.get("peft_type")
    if peft_type != "PROMPT_TUNING":
        raise AdapterFormatError(
            f"{folder} is a PEFT {peft_type} adapter; only PROMPT_TUNING soft prompts can be imported"
        )
    try:
        tensors = load_file(str(weights_path))
    except (SafetensorError, OSError) as e:
        raise AdapterFormatError(f"{weights_path} could not be read as safetensors: {e}") from e
    if PEFT_TENSOR not in tensors:
        raise AdapterFormatError(f"{weights_path} has no {PEFT_TENSOR!r} tensor (found {sorted(tensors)})")
    table = tensors[PEFT_TENSOR]  # (P * submodules, D)
    virtual = int(peft_config["num_virtual_tokens"])
    if table.ndim != 2 or table.shape[0] < virtual:
        raise AdapterFormatError(f"{PEFT_TENSOR} has shape {tuple(table.shape)}, expected ({virtual}*k, D)")
    config = AdapterConfig(
        kind="prompt-tuning",
        d_model=int(table.shape[1]),
        prompt_length=virtual,
        base_model=base_model or str(peft_config.get("base_model_name_or_path") or ""),
        base_fingerprint=base_fingerprint,
    )
    metadata = {"imported_from": "peft", "peft_task_type": str(peft_config.get("task_type"))}
    return AdapterWeights(config, {"prompt": table[:virtual].float().clone()}, metadata)
