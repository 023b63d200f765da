"""The training forward: the serving layout of ``adapters.AdaptedModel``, differentiable.

Shapes: B batch rows, Ts source tokens, Tt target tokens, P prompt tokens, L = P + Ts + Tt (decoder-only
sequence), D model width, V vocabulary.

Encoder-decoder (T5): encoder input ``[prompt ; MLP(embed(source))]`` right-padded, exactly what
``AdaptedModel.embed`` builds; labels are the target ids, decoder inputs are the labels shifted right
(the decoder start token first), untouched by the adapter.

Decoder-only (GPT-2): ``[prompt ; MLP(embed(source + EOS)) ; embed(target + EOS)]`` right-padded with
positions 0..n-1 per row. Generation left-pads and uses ``cumsum(mask) - 1``, which gives every real
token the same position, so both see the same sequence. Loss only on the target tokens (each predicted
from the position before it, the first one from the separator EOS).

Fine-tuning is the same layout without an adapter (``adapter=None``).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn
from transformers import PreTrainedModel

from adapters.apply import place_prompts, valid_token_mask
from adapters.module import InputAdapter
from training.batching import IGNORE_INDEX


class TrainModule(nn.Module):
    """A base model plus, for the adapter methods, the one trainable ``InputAdapter``.

    ``forward`` returns the summed token cross-entropy (a 0-d tensor) and, when asked, the logits:
    (B, Tt, V) for an encoder-decoder base, (B, L, V) for a decoder-only base.
    """

    def __init__(
        self, base_model: PreTrainedModel, encoder_decoder: bool, adapter: InputAdapter | None
    ) -> None:
        super().__init__()
        self.base_model = base_model
        self.encoder_decoder = encoder_decoder
        self.adapter = adapter

    def _source(
        self, source_ids: torch.Tensor, source_lengths: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """[prompt ; adapted source] (B, P+Ts, D), right-padded, and its lengths (B,)."""
        embeds = self.base_model.get_input_embeddings()(source_ids)  # (B, Ts, D)
        if self.adapter is None:
            return embeds, source_lengths
        embeds, _ = self.adapter(embeds, source_lengths, "right")
        return embeds, source_lengths + self.adapter.config.prompt_length

    def forward(
        self,
        source_ids: torch.Tensor,
        source_lengths: torch.Tensor,
        target_ids: torch.Tensor,
        target_lengths: torch.Tensor,
        return_logits: bool = False,
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        if self.encoder_decoder:
            return self._encoder_decoder(source_ids, source_lengths, target_ids, return_logits)
        return self._decoder_only(source_ids, source_lengths, target_ids, target_lengths, return_logits)

    def _encoder_decoder(self, source_ids, source_lengths, labels, return_logits):
        embeds, lengths = self._source(source_ids, source_lengths)
        mask = valid_token_mask(lengths, embeds.shape[1]).long()  # (B, P+Ts)
        decoder_input_ids = self.base_model.prepare_decoder_input_ids_from_labels(labels=labels)  # (B, Tt)
        logits = self.base_model(
            inputs_embeds=embeds, attention_mask=mask, decoder_input_ids=decoder_input_ids, use_cache=False
        ).logits  # (B, Tt, V)
        loss = F.cross_entropy(
            logits.flatten(0, 1).float(), labels.flatten(), ignore_index=IGNORE_INDEX, reduction="sum"
        )
        return loss, logits if return_logits else None

    def _decoder_only(self, source_ids, source_lengths, target_ids, target_lengths, return_logits):
        prefix, prefix_lengths = self._source(source_ids, source_lengths)  # (B, P+Ts, D)
        wte = self.base_model.get_input_embeddings()
        targets = wte(target_ids.clamp(min=0))  # (B, Tt, D); padding (-100) looked up as id 0, then dropped
        embeds, mask = place_prompts(targets, target_lengths, prefix, prefix_lengths, "right")  # (B, L, D)
        batch, length = mask.shape
        k = torch.arange(length, device=mask.device)[None, :] - prefix_lengths[:, None]  # index into target
        is_target = (k >= 0) & (k < target_lengths[:, None])
        labels = torch.where(
            is_target, target_ids.gather(1, k.clamp(0, target_ids.shape[1] - 1)), IGNORE_INDEX
        )
        positions = torch.arange(length, device=mask.device).expand(batch, length)
        hidden = self.base_model.base_model(
            inputs_embeds=embeds, attention_mask=mask, position_ids=positions, use_cache=False
        ).last_hidden_state  # (B, L, D)
        head = self.base_model.get_output_embeddings()
        predicts = labels[:, 1:] != IGNORE_INDEX  # position t predicts token t+1
        picked = head(hidden[:, :-1][predicts])  # (N, V): logits only where there is a loss
        loss = F.cross_entropy(picked.float(), labels[:, 1:][predicts], reduction="sum")
        return loss, head(hidden) if return_logits else None
