"""Batched application of many adapters to one batch of input embeddings.

Shapes: B batch rows, T input tokens (right-padded), N valid adapted tokens,
S bank slots, P prompt tokens, Pc prompt capacity, D width, H inner size.

Two implementations of each step: a fast one (a fixed number of tensor operations,
whatever the number of distinct adapters) and a plain reference (a loop over adapters
or rows). Tests hold them equal; the reference is what the math means. The prompt
placement itself lives in ``ops.py`` (training's single-adapter module uses it too).
"""

from __future__ import annotations

import functools
from typing import Literal

import torch
import torch.nn.functional as F

from .bank import AdapterBank
from .config import ACTIVATIONS
from .ops import (
    ACTIVATION_FNS,
    PaddingSide,
    mlp_delta,
    place_prompts,
    place_prompts_reference,
    valid_token_mask,
)

ApplyPath = Literal["fast", "reference"]

_grouped_mm = getattr(F, "grouped_mm", None) or getattr(torch, "_grouped_mm", None)


# ---------------------------------------------------------------------------- input MLP


def adapt_inputs_reference(
    inputs: torch.Tensor, input_lengths: torch.Tensor, slot_ids: torch.Tensor, bank: AdapterBank
) -> torch.Tensor:
    """Loop over the distinct adapters of the batch; each applies its own (unpadded) MLP to its rows."""
    out = inputs.clone()
    for slot in sorted(set(slot_ids.tolist())):
        mlp = bank.slot_mlp(slot)
        if mlp is None:
            continue
        rows = (slot_ids == slot).nonzero().squeeze(1)
        x = inputs.index_select(0, rows)  # (b, T, D)
        out[rows] = x + mlp_delta(x, *mlp)
    return out


@functools.cache
def _grouped_mm_works(device_type: str, dtype: torch.dtype) -> bool:
    """Whether this torch has a grouped matmul kernel for the device and dtype (probed once, exactly)."""
    if _grouped_mm is None:
        return False
    try:
        x = torch.ones(4, 8, device=device_type, dtype=dtype)
        w = torch.ones(2, 8, 8, device=device_type, dtype=dtype)
        out = _grouped_mm(x, w, offs=torch.tensor([2, 4], dtype=torch.int32, device=device_type))
        return bool((out == 8).all())
    except (RuntimeError, NotImplementedError):
        return False


def _grouped_matmul(
    x: torch.Tensor, weights: torch.Tensor, offsets: torch.Tensor, counts: list[int]
) -> torch.Tensor:
    """Rows of x sorted by group times that group's matrix: (N, K) x (S, K, M) -> (N, M).

    Uses torch's grouped matmul where the device has one; otherwise a loop over the
    non-empty groups' contiguous row ranges (same result, more kernel launches).
    """
    aligned = x.shape[1] % 8 == 0 and weights.shape[2] % 8 == 0
    if aligned and _grouped_mm is not None and _grouped_mm_works(x.device.type, x.dtype):
        return _grouped_mm(x.contiguous(), weights, offs=offsets)
    out = x.new_empty(x.shape[0], weights.shape[2])
    start = 0
    for slot, count in enumerate(counts):
        if count:
            out[start : start + count] = x[start : start + count] @ weights[slot]
            start += count
    return out


def adapt_inputs_fast(
    inputs: torch.Tensor, input_lengths: torch.Tensor, slot_ids: torch.Tensor, bank: AdapterBank
) -> torch.Tensor:
    """Apply each row's MLP to its valid tokens in one grouped pass over the whole bank.

    Tokens are sorted by slot and multiplied by their slot's W1/W2 with a grouped matmul
    that reads the bank in place: no per-adapter loop, no copy of adapter weights.
    """
    batch, tokens, width = inputs.shape
    row_has_mlp = bank.has_mlp.index_select(0, slot_ids)  # (B,)
    valid = valid_token_mask(input_lengths, tokens) & row_has_mlp[:, None]  # (B, T)
    flat = valid.reshape(-1).nonzero().squeeze(1)  # (N,)
    if flat.numel() == 0:
        return inputs
    token_slots = slot_ids[:, None].expand(batch, tokens).reshape(-1).index_select(0, flat)  # (N,)
    token_slots, order = torch.sort(token_slots, stable=True)
    flat = flat.index_select(0, order)
    x = inputs.reshape(batch * tokens, width).index_select(0, flat)  # (N, D), sorted by slot
    counts_t = torch.bincount(token_slots, minlength=bank.w1.shape[0])  # (S,)
    offsets = counts_t.cumsum(0).to(torch.int32)
    counts = counts_t.tolist()
    hidden = _grouped_matmul(x, bank.w1, offsets, counts) + bank.b1.index_select(0, token_slots)  # (N, Hc)
    act_ids = bank.activation_ids.index_select(0, token_slots)  # (N,)
    distinct_acts = act_ids.unique().tolist()
    if len(distinct_acts) == 1:
        hidden = ACTIVATION_FNS[ACTIVATIONS[distinct_acts[0]]](hidden)
    else:
        mixed = hidden.clone()
        for act in distinct_acts:
            rows = act_ids == act
            mixed[rows] = ACTIVATION_FNS[ACTIVATIONS[act]](hidden[rows])
        hidden = mixed
    delta = _grouped_matmul(hidden, bank.w2, offsets, counts) + bank.b2.index_select(0, token_slots)  # (N, D)
    out = inputs.reshape(batch * tokens, width).index_add(0, flat, delta.to(inputs.dtype))
    return out.view(batch, tokens, width)


# ---------------------------------------------------------------------------- both


def apply_adapters(
    embeds: torch.Tensor,
    input_lengths: torch.Tensor,
    slot_ids: torch.Tensor,
    bank: AdapterBank,
    padding_side: PaddingSide = "right",
    path: ApplyPath = "fast",
) -> tuple[torch.Tensor, torch.Tensor]:
    """Apply each row's adapter (MLP on its input tokens, then its prompt in front).

    embeds (B, T, D) right-padded token embeddings, input_lengths (B,), slot_ids (B,) into
    ``bank`` (0 = no adapter). Returns (B, T', D) embeddings and their (B, T') attention mask,
    padded on ``padding_side``; each row holds exactly its own prompt and input.
    """
    if path == "fast":
        adapted = adapt_inputs_fast(embeds, input_lengths, slot_ids, bank)
        prompts = bank.prompts.index_select(0, slot_ids)  # (B, Pc, D)
        return place_prompts(
            adapted, input_lengths, prompts, bank.prompt_lengths.index_select(0, slot_ids), padding_side
        )
    if path == "reference":
        adapted = adapt_inputs_reference(embeds, input_lengths, slot_ids, bank)
        row_prompts = [bank.slot_prompt(s) for s in slot_ids.tolist()]
        return place_prompts_reference(adapted, input_lengths, row_prompts, padding_side)
    raise ValueError(f"path must be 'fast' or 'reference', got {path!r}")
