"""The adapted model: a frozen base plus a bank of adapters, generating for mixed batches.

Shapes: B batch rows, T input tokens, T' tokens after prompts, D width, V vocabulary.

Flow of ``generate``: tokenize -> embed -> per-row adapter MLP -> per-row prompt ->
ONE encoder pass for the whole batch -> decoder generation (``decoding/static.py``, grouped only
where beam settings differ) -> detokenize. Training's evaluation and the server both call this.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from pathlib import Path

import torch

from .apply import ApplyPath, apply_adapters
from .bank import NO_ADAPTER, AdapterBank
from .base import BaseModel, load_base
from .decoding.params import GenerationOutput, GenerationParams
from .decoding.sampling import RowDecoding
from .decoding.static import generate_rows
from .errors import InputTooLongError, InvalidInputError
from .fileformat import check_compatible
from .io import load_adapter
from .module import AdapterWeights
from .ops import PaddingSide
from .text import encode_sources

DEFAULT_PARAMS = GenerationParams()


class AdaptedModel:
    """A frozen base model with ``num_slots`` adapter slots on its device."""

    def __init__(self, base: BaseModel, num_slots: int = 8) -> None:
        self.base = base
        self.bank = AdapterBank(num_slots, base.d_model, base.device, base.dtype)

    @classmethod
    def load(
        cls, path: str | Path, device: str = "auto", dtype: str | torch.dtype = "auto", num_slots: int = 8
    ) -> AdaptedModel:
        return cls(load_base(path, device=device, dtype=dtype), num_slots=num_slots)

    @property
    def tokenizer(self):
        return self.base.tokenizer

    @property
    def is_encoder_decoder(self) -> bool:
        return self.base.family == "encoder-decoder"

    # ------------------------------------------------------------------ adapters

    def load_adapter(self, slot: int, weights: AdapterWeights, name: str = "adapter") -> None:
        """Check the adapter fits this base, then put it into a bank slot."""
        check_compatible(weights.config, self.base.fingerprint, self.base.d_model, origin=f"adapter {name!r}")
        self.bank.load(slot, weights)

    def load_adapter_file(self, slot: int, path: str | Path) -> AdapterWeights:
        weights = load_adapter(path, self.base.fingerprint, self.base.d_model)
        self.bank.load(slot, weights)
        return weights

    # ------------------------------------------------------------------ inputs

    def encode(self, texts: Sequence[str]) -> list[list[int]]:
        """Token ids of each source text (see ``encode_sources``)."""
        return encode_sources(self.tokenizer, texts, self.is_encoder_decoder)

    def _pad(self, input_ids: Sequence[Sequence[int]]) -> tuple[torch.Tensor, torch.Tensor]:
        lengths = torch.tensor([len(r) for r in input_ids], dtype=torch.long)
        if int(lengths.min()) < 1:
            raise InvalidInputError("an input has no tokens")
        ids = torch.full((len(input_ids), int(lengths.max())), self.tokenizer.pad_token_id, dtype=torch.long)
        for b, row in enumerate(input_ids):
            ids[b, : len(row)] = torch.tensor(row, dtype=torch.long)
        return ids.to(self.base.device), lengths.to(self.base.device)

    def embed(
        self, input_ids: Sequence[Sequence[int]], slot_ids: Sequence[int], path: ApplyPath = "fast"
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Adapted input embeddings (B, T', D) and attention mask (B, T') for token id rows."""
        if len(input_ids) != len(slot_ids):
            raise ValueError(f"{len(input_ids)} inputs but {len(slot_ids)} slot ids")
        for slot in slot_ids:
            if slot != NO_ADAPTER and self.bank.configs[slot] is None:
                raise ValueError(f"slot {slot} holds no adapter")
        ids, lengths = self._pad(input_ids)
        slots = torch.tensor(list(slot_ids), dtype=torch.long, device=self.base.device)
        embeds = self.base.model.get_input_embeddings()(ids)  # (B, T, D)
        side: PaddingSide = "right" if self.is_encoder_decoder else "left"
        return apply_adapters(embeds, lengths, slots, self.bank, padding_side=side, path=path)

    def _tokens(self, inputs: Sequence[str] | Sequence[Sequence[int]]) -> list[list[int]]:
        if inputs and isinstance(inputs[0], str):
            return self.encode(inputs)  # type: ignore[arg-type]
        return [list(r) for r in inputs]  # type: ignore[arg-type]

    # ------------------------------------------------------------------ generation

    @torch.inference_mode()
    def generate(
        self,
        inputs: Sequence[str] | Sequence[Sequence[int]],
        slot_ids: Sequence[int],
        params: GenerationParams | Sequence[GenerationParams] = DEFAULT_PARAMS,
        path: ApplyPath = "fast",
        decodings: Sequence[RowDecoding] | None = None,
    ) -> list[GenerationOutput]:
        """Generate for a mixed batch: row b uses adapter slot ``slot_ids[b]`` (0 = none) and
        ``params[b]`` (or one GenerationParams for all rows). Each row gets exactly the output it
        gets alone (greedy, beam search, and seeded sampling). ``decodings``: the rows' decoding
        states when the caller keeps them (streamed rows)."""
        token_rows = self._tokens(inputs)
        n = len(token_rows)
        row_params = [params] * n if isinstance(params, GenerationParams) else list(params)
        if len(row_params) != n:
            raise ValueError(f"{n} inputs but {len(row_params)} parameter sets")
        if n == 0:
            return []
        self._check_lengths(token_rows, slot_ids, row_params)
        embeds, mask = self.embed(token_rows, slot_ids, path=path)  # (B, T', D), (B, T')
        encoded = None
        if self.is_encoder_decoder:  # ONE encoder pass for every row of the batch
            encoded = self.base.model.get_encoder()(
                inputs_embeds=embeds, attention_mask=mask, return_dict=True
            )
        groups = self._decode_groups(token_rows, slot_ids, row_params)
        results: list[GenerationOutput | None] = [None] * n
        for rows in groups:
            states = [decodings[b] for b in rows] if decodings is not None else None
            for b, out in zip(
                rows, self._decode(rows, embeds, mask, encoded, row_params, token_rows, states), strict=True
            ):
                results[b] = out
        return results  # type: ignore[return-value]

    def _decode_groups(self, token_rows, slot_ids, row_params) -> list[list[int]]:
        """Rows that can share one decoder ``generate`` call.

        A call runs until its largest ``max_new_tokens``; on a base with absolute positions a long
        row would then run past them although its own limit fits, so such rows decode in a call
        of their own length limit.
        """
        groups: dict[tuple[int, ...], list[int]] = defaultdict(list)
        for b, p in enumerate(row_params):
            groups[p.group_key()].append(b)
        limit = self.base.max_positions
        if limit is None:
            return list(groups.values())
        split: dict[tuple[int, ...], list[int]] = defaultdict(list)
        for key, rows in groups.items():
            longest = max(row_params[b].max_new_tokens for b in rows)
            for b in rows:
                need = len(token_rows[b]) + self.bank.host_prompt_lengths[slot_ids[b]] + longest
                split[key if need <= limit else (*key, row_params[b].max_new_tokens)].append(b)
        return list(split.values())

    def _check_lengths(self, token_rows, slot_ids, row_params) -> None:
        limit = self.base.max_positions
        if limit is None:
            return
        for b, (row, slot, p) in enumerate(zip(token_rows, slot_ids, row_params, strict=True)):
            need = len(row) + self.bank.host_prompt_lengths[slot] + p.max_new_tokens
            if need > limit:
                raise InputTooLongError(
                    f"input {b} needs {need} positions (prompt + {len(row)} input tokens + max_new_tokens="
                    f"{p.max_new_tokens}) but the model has {limit}: shorten the input or max_new_tokens"
                )

    def _decode(self, rows, embeds, mask, encoded, row_params, token_rows, states) -> list[GenerationOutput]:
        """One ``generate`` call for the batch rows ``rows`` (one group), on their share of the batch."""
        index = torch.tensor(rows, device=mask.device)
        sub_mask = mask.index_select(0, index)
        used = int(sub_mask.sum(1).max())  # columns that are padding for every row of the group
        params = [row_params[b] for b in rows]
        counts = [len(token_rows[b]) for b in rows]
        if encoded is not None:  # right-padded: the trailing columns go
            hidden = encoded.last_hidden_state.index_select(0, index)[:, :used]
            return generate_rows(
                self.base.model,
                self.tokenizer,
                params,
                counts,
                sub_mask[:, :used],
                encoder_hidden=hidden,
                decodings=states,
            )
        start = sub_mask.shape[1] - used  # left-padded: the leading columns go
        sub_embeds = embeds.index_select(0, index)[:, start:]
        return generate_rows(
            self.base.model,
            self.tokenizer,
            params,
            counts,
            sub_mask[:, start:],
            inputs_embeds=sub_embeds,
            decodings=states,
        )

    # ------------------------------------------------------------------ scoring

    @torch.inference_mode()
    def logits(
        self,
        inputs: Sequence[str] | Sequence[Sequence[int]],
        slot_ids: Sequence[int],
        decoder_input_ids: torch.Tensor | None = None,
        path: ApplyPath = "fast",
    ) -> torch.Tensor:
        """Teacher-forced logits. Encoder-decoder: (B, T_dec, V) for ``decoder_input_ids``.
        Decoder-only: (B, T', V) over the prompt+input positions (left-padded)."""
        embeds, mask = self.embed(self._tokens(inputs), slot_ids, path=path)
        model = self.base.model
        if self.is_encoder_decoder:
            assert decoder_input_ids is not None, "encoder-decoder logits need decoder_input_ids"
            return model(
                inputs_embeds=embeds, attention_mask=mask, decoder_input_ids=decoder_input_ids
            ).logits
        position_ids = (mask.cumsum(-1) - 1).clamp(min=0)
        return model(inputs_embeds=embeds, attention_mask=mask, position_ids=position_ids).logits
