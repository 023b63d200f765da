"""Random bases and adapters built from configs: for tests, benchmarks and the placeholder default.

No downloads: tokenizers are byte-level and built in code (ByT5's for T5, a byte-level
BPE without merges for GPT-2), so any text round-trips. Random adapters carry their base's
fingerprint, so they load like trained ones.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from transformers import (
    ByT5Tokenizer,
    GPT2Config,
    GPT2LMHeadModel,
    PreTrainedTokenizerFast,
    T5Config,
    T5ForConditionalGeneration,
)

from .base import BaseModel, wrap_base
from .config import AdapterConfig, Kind
from .io import save_adapter
from .module import random_adapter

# Shapes of real T5 checkpoints (v1.0), with random weights.
T5_SHAPES: dict[str, dict] = {
    "tiny": dict(
        d_model=64, d_ff=128, num_layers=2, num_decoder_layers=2, num_heads=4, d_kv=16, vocab_size=384
    ),
    "t5-small": dict(
        d_model=512, d_ff=2048, num_layers=6, num_decoder_layers=6, num_heads=8, d_kv=64, vocab_size=32128
    ),
    "t5-base": dict(
        d_model=768, d_ff=3072, num_layers=12, num_decoder_layers=12, num_heads=12, d_kv=64, vocab_size=32128
    ),
    "t5-large": dict(
        d_model=1024, d_ff=4096, num_layers=24, num_decoder_layers=24, num_heads=16, d_kv=64, vocab_size=32128
    ),
}
GPT2_SHAPES: dict[str, dict] = {
    "tiny": dict(n_embd=64, n_layer=2, n_head=4, n_positions=512, vocab_size=257),
    "gpt2": dict(n_embd=768, n_layer=12, n_head=12, n_positions=1024, vocab_size=50257),
}


def byte_gpt2_tokenizer() -> PreTrainedTokenizerFast:
    """Byte-level BPE with no merges: one token per byte, id 256 is <|endoftext|>."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers
    from transformers.convert_slow_tokenizer import bytes_to_unicode

    byte_chars = bytes_to_unicode()
    vocab = {byte_chars[b]: b for b in range(256)}
    vocab["<|endoftext|>"] = 256
    backend = Tokenizer(models.BPE(vocab=vocab, merges=[]))
    backend.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    backend.decoder = decoders.ByteLevel()
    special = "<|endoftext|>"
    return PreTrainedTokenizerFast(
        tokenizer_object=backend, eos_token=special, bos_token=special, unk_token=special, pad_token=special
    )


def build_random_base(
    family: str = "t5",
    shape: str = "tiny",
    seed: int = 0,
    device: str | torch.device = "cpu",
    dtype: torch.dtype = torch.float32,
    init_scale: float = 1.0,
) -> BaseModel:
    """A frozen base with random weights in a real architecture; deterministic for a seed."""
    torch.manual_seed(seed)
    model: Any
    tokenizer: Any
    if family == "t5":
        if shape not in T5_SHAPES:
            raise ValueError(f"unknown T5 shape {shape!r}: use one of {', '.join(T5_SHAPES)}")
        t5_config = T5Config(  # type: ignore[call-arg]  # T5Config takes the generic config fields as kwargs
            **T5_SHAPES[shape],
            decoder_start_token_id=0,
            pad_token_id=0,
            eos_token_id=1,
            initializer_factor=init_scale,
            tie_word_embeddings=False,
        )
        tokenizer = ByT5Tokenizer()
        with torch.device(device):
            model = T5ForConditionalGeneration(t5_config)
    elif family == "gpt2":
        if shape not in GPT2_SHAPES:
            raise ValueError(f"unknown GPT-2 shape {shape!r}: use one of {', '.join(GPT2_SHAPES)}")
        gpt2_config = GPT2Config(
            **GPT2_SHAPES[shape], bos_token_id=256, eos_token_id=256, initializer_range=0.02 * init_scale
        )
        tokenizer = byte_gpt2_tokenizer()
        with torch.device(device):
            model = GPT2LMHeadModel(gpt2_config)
    else:
        raise ValueError(f"unknown family {family!r}: use t5 or gpt2")
    model.to(dtype=dtype)
    return wrap_base(model, tokenizer, name=f"random-{family}-{shape}-seed{seed}")


def save_base(base: BaseModel, folder: str | Path) -> Path:
    """Save model and tokenizer as a Hugging Face folder (safetensors)."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    base.model.save_pretrained(folder)
    base.tokenizer.save_pretrained(folder)
    return folder


def write_random_adapters(
    base: BaseModel,
    count: int,
    out: str | Path,
    *,
    prefix: str = "synth-",
    prompt_length: int = 16,
    kind: Kind = "input-tuning",
    dtype: torch.dtype = torch.bfloat16,
    progress: bool = False,
) -> list[Path]:
    """``count`` random adapters ``<prefix><i>.safetensors`` for ``base`` in ``out`` (seed i each)."""
    from tqdm import tqdm

    if count < 1:
        raise ValueError(f"count must be >= 1, got {count}")
    config = AdapterConfig(
        kind, base.d_model, prompt_length, base_model=base.name, base_fingerprint=base.fingerprint
    )
    width = len(str(count - 1))
    paths = []
    for i in tqdm(range(count), desc="adapters", unit="file", disable=not progress):
        weights = random_adapter(config, seed=i)
        weights.metadata["note"] = "random adapter for speed tests"
        paths.append(save_adapter(weights, Path(out) / f"{prefix}{i:0{width}d}.safetensors", dtype=dtype))
    return paths
