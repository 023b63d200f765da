"""The frozen base model: loading, family detection and fingerprint.

Shapes: V vocabulary size, D model width.
"""

from __future__ import annotations

import hashlib
import json
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, cast

import torch
from transformers import (
    AutoConfig,
    AutoModelForCausalLM,
    AutoModelForSeq2SeqLM,
    AutoTokenizer,
    PreTrainedModel,
)

from .errors import BaseModelError

log = logging.getLogger(__name__)

Family = Literal["encoder-decoder", "decoder-only"]

ENCODER_DECODER_TYPES = ("t5", "mt5", "umt5")  # t5 covers t5 v1.0/v1.1, flan-t5 and byt5 configs
DECODER_ONLY_TYPES = ("gpt2",)
DTYPES = {
    "float32": torch.float32,
    "fp32": torch.float32,
    "bfloat16": torch.bfloat16,
    "bf16": torch.bfloat16,
    "float16": torch.float16,
    "fp16": torch.float16,
}
FINGERPRINT_ROWS = 256


def resolve_device(device: str) -> torch.device:
    """``auto`` picks cuda when a GPU is visible, else cpu."""
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    dev = torch.device(device)
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise BaseModelError(f"device {device!r} was asked for but no CUDA GPU is visible: use --device cpu")
    return dev


def resolve_dtype(dtype: str | torch.dtype, device: torch.device) -> torch.dtype:
    """``auto`` is bf16 on a GPU and fp32 on a CPU; fp16 is refused on a CPU (too slow, often unsupported)."""
    if isinstance(dtype, torch.dtype):
        resolved = dtype
    elif dtype == "auto":
        resolved = torch.bfloat16 if device.type == "cuda" else torch.float32
    elif dtype in DTYPES:
        resolved = DTYPES[dtype]
    else:
        raise BaseModelError(f"dtype {dtype!r} is unknown: use auto, float32, bfloat16 or float16")
    if resolved == torch.float16 and device.type != "cuda":
        raise BaseModelError("float16 is only supported on a GPU: use float32 or bfloat16 on the CPU")
    return resolved


def model_family(model_type: str) -> Family:
    if model_type in ENCODER_DECODER_TYPES:
        return "encoder-decoder"
    if model_type in DECODER_ONLY_TYPES:
        return "decoder-only"
    raise BaseModelError(
        f"model type {model_type!r} is not supported: use an encoder-decoder of the T5 family "
        f"({', '.join(ENCODER_DECODER_TYPES)}) or a decoder-only model ({', '.join(DECODER_ONLY_TYPES)})"
    )


def d_model_of(config) -> int:
    return int(getattr(config, "d_model", None) or config.hidden_size)


def fingerprint(model: PreTrainedModel) -> str:
    """A stable identity of a base model, cheap even for T5-large.

    Hashes a few config fields and FINGERPRINT_ROWS evenly spaced rows of the input
    embedding table rounded to bfloat16, so the same checkpoint loaded in fp32 or bf16,
    on a CPU or a GPU, gives the same fingerprint.
    """
    config = model.config
    embedding = cast(torch.nn.Embedding, model.get_input_embeddings())
    weight = embedding.weight.detach()  # (V, D)
    vocab, width = weight.shape
    rows = torch.linspace(0, vocab - 1, steps=min(vocab, FINGERPRINT_ROWS)).round().long()
    sample = weight.index_select(0, rows.to(weight.device)).to(torch.bfloat16).float().cpu()
    head = {
        "model_type": config.model_type,
        "vocab": vocab,
        "d_model": width,
        "layers": getattr(config, "num_layers", None) or getattr(config, "n_layer", None),
    }
    digest = hashlib.sha256(json.dumps(head, sort_keys=True).encode())
    digest.update(sample.numpy().tobytes())
    return "sha256:" + digest.hexdigest()[:32]


@dataclass
class BaseModel:
    """A loaded, frozen base model with its tokenizer."""

    model: PreTrainedModel
    tokenizer: Any  # a transformers tokenizer (slow or fast)
    name: str
    family: Family
    fingerprint: str
    device: torch.device
    dtype: torch.dtype

    @property
    def d_model(self) -> int:
        return d_model_of(self.model.config)

    @property
    def max_positions(self) -> int | None:
        """Hard cap on prompt + input + output for absolute-position models, None for T5."""
        return getattr(self.model.config, "n_positions", None)


def freeze(model: PreTrainedModel) -> PreTrainedModel:
    model.eval()
    for param in model.parameters():
        param.requires_grad_(False)
    return model


def prepare_tokenizer(tokenizer, family: Family):
    """Decoder-only tokenizers often lack a pad token; reuse eos, which is never attended."""
    if tokenizer.pad_token_id is None:
        if tokenizer.eos_token_id is None:
            raise BaseModelError("the tokenizer has neither a pad nor an eos token: add one to its config")
        tokenizer.pad_token = tokenizer.eos_token
    if family == "encoder-decoder" and tokenizer.eos_token_id is None:
        raise BaseModelError("the encoder-decoder tokenizer has no eos token")
    return tokenizer


def wrap_base(model: PreTrainedModel, tokenizer, name: str) -> BaseModel:
    """Freeze an in-memory model and describe it as a BaseModel."""
    family = model_family(model.config.model_type)
    freeze(model)
    param = next(model.parameters())
    return BaseModel(
        model=model,
        tokenizer=prepare_tokenizer(tokenizer, family),
        name=name,
        family=family,
        fingerprint=fingerprint(model),
        device=param.device,
        dtype=param.dtype,
    )


def load_base(path: str | Path, device: str = "auto", dtype: str | torch.dtype = "auto") -> BaseModel:
    """Load a frozen base model and its tokenizer from a Hugging Face folder (or a hub id when online).

    Raises BaseModelError with a message saying what to fix.
    """
    name = str(path)
    dev = resolve_device(device)
    torch_dtype = resolve_dtype(dtype, dev)
    local = Path(path).expanduser()
    if local.exists() and not (local / "config.json").is_file():
        raise BaseModelError(f"{local} has no config.json: point --model at a Hugging Face model folder")
    source = str(local) if local.exists() else name
    try:
        config = AutoConfig.from_pretrained(source)
    except OSError as e:
        raise BaseModelError(
            f"could not load base model {name!r}: it is not a local folder and the hub could not serve it "
            f"({e.__class__.__name__}); download it on a machine with network access and pass its folder"
        ) from e
    family = model_family(config.model_type)
    loader = AutoModelForSeq2SeqLM if family == "encoder-decoder" else AutoModelForCausalLM
    try:
        model = loader.from_pretrained(source, dtype=torch_dtype)
        tokenizer = AutoTokenizer.from_pretrained(source)
    except (OSError, ValueError) as e:
        raise BaseModelError(f"could not load base model {name!r}: {e}") from e
    model.to(dev)  # type: ignore[arg-type]
    base = wrap_base(model, tokenizer, name=local.name if local.exists() else name)
    log.info("loaded base %s (%s, d_model=%d) on %s as %s", base.name, family, base.d_model, dev, torch_dtype)
    return base
