"""The training forward: the serving layout of ``adapters.AdaptedModel``, differentiable.

Shapes: B batch rows, T tokens of a row (right-padded), Tt target tokens, P prompt tokens, N target
tokens of the batch, D model width, V vocabulary.

Encoder-decoder (T5): encoder input ``[prompt ; MLP(embed(source))]`` right-padded, what
``AdaptedModel.embed`` builds; labels are the target ids, decoder inputs are the labels shifted right
(the decoder start token first), untouched by the adapter.

Decoder-only (GPT-2): ``[prompt ; MLP(embed(source + EOS)) ; embed(target + EOS)]`` right-padded with
positions 0..n-1 per row. Generation left-pads and uses ``cumsum(mask) - 1``, which gives every real
token the same position, so both see the same sequence. Loss only on the target tokens (each predicted
from the position before it, the first one from the separator EOS).

Every row has the same prompt length, so the prompt is a plain concatenation in front and every shape
is known from the host-built batch: the forward makes no host sync. (``InputAdapter.forward`` places
prompts through ``adapters.apply.place_prompts``, which reads the longest row back from the device.)
Padding positions hold adapted pad embeddings instead of zeros; attention never sees them.
Fine-tuning is the same layout without an adapter (``adapter=None``).
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import nn
from transformers import PreTrainedModel

from adapters.module import InputAdapter
from training.common.losses import IGNORE_INDEX


class TrainModule(nn.Module):
    """A base model plus, for the adapter methods, the one trainable ``InputAdapter``.

    ``forward`` returns the summed token cross-entropy (a 0-d tensor) and, when asked, the logits:
    (B, Tt, V) for an encoder-decoder base, (B, P+T, V) for a decoder-only base.
    """

    def __init__(
        self, base_model: PreTrainedModel, encoder_decoder: bool, adapter: InputAdapter | None
    ) -> None:
        super().__init__()
        self.base_model = base_model
        self.encoder_decoder = encoder_decoder
        self.adapter = adapter

    def _inputs(
        self, input_ids: torch.Tensor, attention_mask: torch.Tensor, adapt_mask: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """[prompt ; adapted tokens] (B, P+T, D) and its attention mask (B, P+T)."""
        embeds = self.base_model.get_input_embeddings()(input_ids)  # (B, T, D)
        if self.adapter is None:
            return embeds, attention_mask
        adapted = self.adapter.adapt(embeds)
        if not self.encoder_decoder:  # the target tokens keep their plain embeddings
            adapted = torch.where(adapt_mask[..., None], adapted, embeds)
        batch, prompt_length = input_ids.shape[0], self.adapter.config.prompt_length
        prompt = self.adapter.prompt.to(adapted.dtype).expand(batch, -1, -1)  # (B, P, D)
        ones = attention_mask.new_ones(batch, prompt_length)
        return torch.cat([prompt, adapted], dim=1), torch.cat([ones, attention_mask], dim=1)

    def forward(
        self,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor,
        adapt_mask: torch.Tensor,
        labels: torch.Tensor,
        loss_index: torch.Tensor | None = None,
        return_logits: bool = False,
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Arguments as in ``training.batching.Batch``; returns (summed loss, logits or None)."""
        embeds, mask = self._inputs(input_ids, attention_mask, adapt_mask)
        if self.encoder_decoder:
            shift_right: Any = self.base_model.prepare_decoder_input_ids_from_labels  # T5's shift right
            decoder_input_ids = shift_right(labels=labels)  # (B, Tt)
            logits = self.base_model(
                inputs_embeds=embeds,
                attention_mask=mask,
                decoder_input_ids=decoder_input_ids,
                use_cache=False,
            ).logits  # (B, Tt, V)
            loss = F.cross_entropy(
                logits.flatten(0, 1).float(), labels.flatten(), ignore_index=IGNORE_INDEX, reduction="sum"
            )
            return loss, logits if return_logits else None
        assert loss_index is not None, "a decoder-only batch needs loss_index"
        batch, length = mask.shape
        positions = torch.arange(length, device=mask.device).expand(batch, length)
        hidden = self.base_model.base_model(
            inputs_embeds=embeds, attention_mask=mask, position_ids=positions, use_cache=False
        ).last_hidden_state  # (B, P+T, D)
        prompt_length = length - input_ids.shape[1]
        rows = hidden[:, prompt_length:].reshape(-1, hidden.shape[-1])  # (B*T, D), without the prompt
        head = self.base_model.get_output_embeddings()
        picked = head(rows.index_select(0, loss_index))  # (N, V): logits only where there is a loss
        loss = F.cross_entropy(picked.float(), labels, reduction="sum")
        return loss, head(hidden) if return_logits else None
