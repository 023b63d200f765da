"""The method's tensor operations, with their plain references: the leaf every other module uses.

Shapes: B batch rows, T input tokens (right-padded), T' tokens after prompts, Pc prompt capacity,
D width, H adapter inner size.

- ``mlp_delta``: the input adapter's change to an embedding, ``W2·act(W1·x + b1) + b2``;
- ``place_prompts``: each row as [its prompt ; its input], padded on either side, in a fixed
  number of tensor operations (``place_prompts_reference`` does it one row at a time).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Literal

import torch
import torch.nn.functional as F

PaddingSide = Literal["right", "left"]

ACTIVATION_FNS: dict[str, Callable[[torch.Tensor], torch.Tensor]] = {
    "relu": F.relu,
    "gelu": F.gelu,
    "silu": F.silu,
    "tanh": torch.tanh,
}


def mlp_delta(x: torch.Tensor, w1, b1, w2, b2, activation: str) -> torch.Tensor:
    """W2·act(W1·x + b1) + b2 for x (..., D): the adapter's change to each embedding."""
    return ACTIVATION_FNS[activation](x @ w1 + b1) @ w2 + b2


def valid_token_mask(input_lengths: torch.Tensor, max_len: int) -> torch.Tensor:
    """(B,) lengths -> (B, T) bool, True on the first length[b] positions."""
    return torch.arange(max_len, device=input_lengths.device)[None, :] < input_lengths[:, None]


def place_prompts(
    inputs: torch.Tensor,
    input_lengths: torch.Tensor,
    prompts: torch.Tensor,
    prompt_lengths: torch.Tensor,
    padding_side: PaddingSide = "right",
) -> tuple[torch.Tensor, torch.Tensor]:
    """Build each row as [its prompt ; its input], padded to the longest row.

    inputs (B, T, D) right-padded with lengths (B,); prompts (B, Pc, D) with lengths (B,).
    Returns embeddings (B, T', D) with zeros on padding, and the attention mask (B, T').
    Differentiable in inputs and prompts (training uses it too).
    """
    batch, tokens, width = inputs.shape
    totals = prompt_lengths + input_lengths  # (B,)
    out_len = int(totals.max()) if batch else 0
    pos = torch.arange(out_len, device=inputs.device)[None, :]  # (1, T')
    start = (out_len - totals)[:, None] if padding_side == "left" else torch.zeros_like(totals)[:, None]
    k = pos - start  # position within the row's own sequence, (B, T')
    plen = prompt_lengths[:, None]
    is_prompt = (k >= 0) & (k < plen)
    is_input = (k >= plen) & (k < totals[:, None])
    input_idx = (k - plen).clamp(0, max(tokens - 1, 0))
    out = torch.where(
        is_input[..., None], inputs.gather(1, input_idx[..., None].expand(batch, out_len, width)), 0.0
    )
    if prompts.shape[1] > 0:
        prompt_idx = k.clamp(0, prompts.shape[1] - 1)
        from_prompt = prompts.gather(1, prompt_idx[..., None].expand(batch, out_len, width))
        out = torch.where(is_prompt[..., None], from_prompt.to(out.dtype), out)
    return out.to(inputs.dtype), (is_prompt | is_input).long()


def place_prompts_reference(
    inputs: torch.Tensor,
    input_lengths: torch.Tensor,
    prompts: list[torch.Tensor],
    padding_side: PaddingSide = "right",
) -> tuple[torch.Tensor, torch.Tensor]:
    """One row at a time: cat(prompt, input) then pad; prompts is a list of (P_b, D)."""
    rows = [
        torch.cat([p.to(inputs.dtype), inputs[b, : int(input_lengths[b])]]) for b, p in enumerate(prompts)
    ]
    out_len = max(r.shape[0] for r in rows)
    out = inputs.new_zeros(len(rows), out_len, inputs.shape[2])
    mask = torch.zeros(len(rows), out_len, dtype=torch.long, device=inputs.device)
    for b, row in enumerate(rows):
        sl = slice(out_len - row.shape[0], out_len) if padding_side == "left" else slice(0, row.shape[0])
        out[b, sl] = row
        mask[b, sl] = 1
    return out, mask
