"""The pretrained T5 itself: built from a preset, its device and optimizer, the training step and the
saved Hugging Face folder. (Its checkpoints are written by ``loop.py``.)

Shapes: N rows, Ls encoder tokens, Lt decoder tokens, V vocabulary.
"""

from __future__ import annotations

import copy
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import torch
from transformers import GenerationConfig, T5Config, T5ForConditionalGeneration

from adapters.base import resolve_device
from training.common.precision import bf16_autocast
from training.pretrain.config import PretrainModelConfig
from training.pretrain.mixture import MicroBatch

MAX_SHARD = "15MB"  # no file of the shipped folder may exceed 15 MB (the repository's file limit)
VOCAB_MULTIPLE = 64  # embedding rows padded for tensor-core friendly shapes
TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json")


def training_device(name: str) -> torch.device:
    """``resolve_device``, with TF32 matmuls allowed on a GPU (the float32 parts of pretraining)."""
    device = resolve_device(name)
    if device.type == "cuda":
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True
    return device


def build_model(
    config: PretrainModelConfig, tokenizer: Any, seed: int, device: torch.device | str = "cpu"
) -> T5ForConditionalGeneration:
    """A randomly initialised T5 for `tokenizer` on `device` (T5 conventions: pad 0 starts the
    decoder, </s> ends)."""
    vocab = -(-len(tokenizer) // VOCAB_MULTIPLE) * VOCAB_MULTIPLE
    fields: dict[str, Any] = dict(
        vocab_size=vocab,
        d_model=config.d_model,
        d_ff=config.d_ff,
        d_kv=config.d_kv,
        num_layers=config.num_layers,
        num_decoder_layers=config.num_decoder_layers,
        num_heads=config.num_heads,
        feed_forward_proj=config.feed_forward_proj,
        tie_word_embeddings=config.tie_word_embeddings,
        dropout_rate=config.dropout_rate,
        relative_attention_num_buckets=config.relative_attention_num_buckets,
        relative_attention_max_distance=config.relative_attention_max_distance,
        pad_token_id=tokenizer.pad_token_id,
        eos_token_id=tokenizer.eos_token_id,
        decoder_start_token_id=tokenizer.pad_token_id,
        is_encoder_decoder=True,
        attn_implementation=config.attn_implementation,
    )
    t5_config = T5Config(**fields)
    torch.manual_seed(seed)
    model = T5ForConditionalGeneration(t5_config)
    model.generation_config = GenerationConfig(
        decoder_start_token_id=tokenizer.pad_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
        max_new_tokens=64,
    )
    torch.nn.Module.to(model, torch.device(device))  # in place; PreTrainedModel.to's decorator defeats mypy
    return model


def count_parameters(model: torch.nn.Module) -> int:
    """Distinct parameters (tied tensors counted once)."""
    return sum(p.numel() for p in {id(p): p for p in model.parameters()}.values())


def make_optimizer(
    model: torch.nn.Module, lr: float, weight_decay: float, betas: tuple[float, float], device: torch.device
) -> torch.optim.AdamW:
    """AdamW (fused on a GPU). Weight decay on the matrices only: embeddings (rows of tokens the
    mixture never shows must keep their distinct random values for the adapters to tell apart),
    norms and relative-position biases get none."""
    decay: list[torch.nn.Parameter] = []
    no_decay: list[torch.nn.Parameter] = []
    for name, param in model.named_parameters():
        if not param.requires_grad:
            continue
        skip = (
            param.ndim < 2
            or "shared" in name
            or "embed" in name
            or "lm_head" in name
            or "relative_attention" in name
        )
        (no_decay if skip else decay).append(param)
    groups = [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}]
    kwargs: dict[str, Any] = {"fused": True} if device.type == "cuda" else {"foreach": True}
    return torch.optim.AdamW(groups, lr=lr, betas=betas, **kwargs)


def to_device(batch: MicroBatch, device: torch.device) -> dict[str, torch.Tensor]:
    """input_ids (N, Ls), attention_mask (N, Ls), labels (N, Lt) on `device`, copied asynchronously."""
    input_ids = torch.from_numpy(np.ascontiguousarray(batch.input_ids))
    labels = torch.from_numpy(np.ascontiguousarray(batch.labels))
    if device.type == "cuda":
        input_ids, labels = input_ids.pin_memory(), labels.pin_memory()
    input_ids = input_ids.to(device, non_blocking=True)
    labels = labels.to(device, non_blocking=True)
    return {"input_ids": input_ids, "attention_mask": input_ids != batch.pad_id, "labels": labels}


def train_step(
    model: torch.nn.Module, batches: list[MicroBatch], device: torch.device
) -> dict[str, torch.Tensor]:
    """Forward and backward over one step's micro-batches (gradients accumulate).

    The step loss is the mean over all target tokens of the step, so each source weighs by its
    tokens. Returns per-source summed token losses as device tensors (no host sync).
    """
    total_targets = sum(b.target_tokens for b in batches)
    sums: dict[str, torch.Tensor] = {}
    for batch in batches:
        tensors = to_device(batch, device)
        with bf16_autocast(device, cuda_only=True):
            loss = model(**tensors).loss  # mean over this batch's target tokens
        (loss * (batch.target_tokens / total_targets)).backward()
        sums[batch.source] = loss.detach().float() * batch.target_tokens
    return sums


@torch.no_grad()
def validation_loss(
    model: torch.nn.Module, batches: list[MicroBatch], device: torch.device
) -> dict[str, float]:
    """Mean per-token loss of each fixed validation batch."""
    was_training = model.training
    model.eval()
    out = {}
    for batch in batches:
        with bf16_autocast(device, cuda_only=True):
            out[batch.source] = float(model(**to_device(batch, device)).loss)
    model.train(was_training)
    return out


# --- the shipped folder -------------------------------------------------------------------------------


def save_base_folder(
    model: T5ForConditionalGeneration, tokenizer_dir: Path, out: Path
) -> list[dict[str, Any]]:
    """Save bf16 weights (shards <= 15 MB), config, generation config and the tokenizer files to `out`.

    Returns [{"file", "bytes"}] of what the folder holds.
    """
    out.mkdir(parents=True, exist_ok=True)
    for old in out.glob("model*.safetensors*"):
        old.unlink()
    # A bf16 copy on the CPU (deepcopy keeps the tied embedding tied, so it is stored once).
    shipped: Any = copy.deepcopy(model)
    shipped.to("cpu", torch.bfloat16)
    shipped.save_pretrained(out, max_shard_size=MAX_SHARD)
    for name in TOKENIZER_FILES:
        shutil.copyfile(tokenizer_dir / name, out / name)
    files: list[dict[str, Any]] = [
        {"file": p.name, "bytes": p.stat().st_size} for p in sorted(out.iterdir()) if p.is_file()
    ]
    too_big = [f for f in files if f["bytes"] > 15_000_000]
    assert not too_big, f"files over 15 MB in the saved folder: {too_big}"
    return files


__all__ = [
    "build_model",
    "count_parameters",
    "make_optimizer",
    "save_base_folder",
    "train_step",
    "training_device",
    "validation_loss",
]
