"""Continuous (iteration-level) batching for encoder-decoder bases of the T5 family.

Shapes: B running rows, S encoder positions, T decoder positions so far, H heads,
K head width, D model width, V vocabulary, L decoder layers.

Rows join the running batch between decoder steps and leave as soon as they finish, so
a short request never waits for a long one and a new request waits at most one step.
Joining rows get their adapters and prompts applied and ONE encoder pass for all of
them together; every step then runs ONE decoder pass (``t5_step.StepDecoder``) for every
running row, whatever its adapter, and the one per-row policy (``sampling.py``) picks each
row's token.
"""

from __future__ import annotations

from collections.abc import Hashable, Sequence
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

import torch
import torch.nn.functional as F

from .params import GenerationOutput, GenerationParams
from .sampling import RowDecoding, TokenChooser
from .t5_step import CONTINUOUS_TYPES, StepDecoder

K = TypeVar("K", bound=Hashable)


def continuous_supported(base_model: Any) -> bool:
    """Whether continuous batching can run this base (a T5/mT5 ``PreTrainedModel``)."""
    return base_model.config.model_type in CONTINUOUS_TYPES


@dataclass(eq=False)
class Running(Generic[K]):
    """One row in the running batch: its key (the caller's handle), its decoding state."""

    key: K
    decoding: RowDecoding
    input_tokens: int

    @property
    def tokens(self) -> list[int]:
        return self.decoding.tokens


class ContinuousBatch(Generic[K]):
    """Rows decoding together; ``admit`` adds rows, ``step`` advances all of them by one token.
    Each row has a key ``K`` of the caller's (any hashable), which ``step`` hands back with its output.

    ``model`` is an AdaptedModel with an encoder-decoder base; the rows' adapters must be in
    its bank (slot ids) when they are admitted; afterwards the adapters are no longer needed.
    """

    def __init__(self, model) -> None:
        self.model = model
        base = model.base.model
        self.decoder = StepDecoder(base)
        self.eos = model.tokenizer.eos_token_id
        self.start = base.config.decoder_start_token_id
        self.vocab = base.config.vocab_size
        self.device = model.base.device
        self.rows: list[Running[K]] = []
        self._reset()

    def _reset(self) -> None:
        self.self_cache: list[tuple[torch.Tensor, torch.Tensor]] = []
        self.cross_cache: list[tuple[torch.Tensor, torch.Tensor]] = []
        self.self_mask = torch.zeros(0, 0, dtype=torch.long, device=self.device)  # (B, T)
        self.cross_mask = torch.zeros(0, 0, dtype=torch.long, device=self.device)  # (B, S)
        self.last = torch.zeros(0, dtype=torch.long, device=self.device)  # (B,)
        self.seen = torch.zeros(0, self.vocab, dtype=torch.bool, device=self.device)  # (B, V) for penalties
        self.chooser = TokenChooser([], self.eos, self.device)

    def __len__(self) -> int:
        return len(self.rows)

    @torch.inference_mode()
    def admit(
        self,
        keys: Sequence[K],
        input_ids: Sequence[Sequence[int]],
        slot_ids: Sequence[int],
        params: Sequence[GenerationParams],
        decodings: Sequence[RowDecoding] | None = None,
    ) -> None:
        """Apply the rows' adapters, run ONE encoder pass for them, and join them to the batch.

        ``decodings``: the rows' decoding states when the caller keeps them (to read a streamed row's
        tokens as they come); by default fresh ones from ``params``."""
        for p in params:
            if p.num_beams != 1:
                raise ValueError("continuous batching runs greedy and sampled rows; use generate() for beams")
        if decodings is None:
            decodings = [RowDecoding.start(p, self.model.tokenizer) for p in params]
        embeds, mask = self.model.embed(input_ids, slot_ids)  # (n, S', D), (n, S')
        encoded = self.model.base.model.get_encoder()(
            inputs_embeds=embeds, attention_mask=mask
        ).last_hidden_state
        cross = self.decoder.cross_cache(encoded)
        n = len(keys)
        heads, width = self.decoder.heads, self.decoder.head_dim
        past = self.self_mask.shape[1]
        # new rows have no decoder positions yet: left-pad them to the running length
        new_self = [(encoded.new_zeros(n, heads, past, width),) * 2 for _ in self.decoder.blocks]
        self.self_cache = _concat_rows(self.self_cache, new_self, pad_dim=2) if self.rows else new_self
        self.cross_cache = _concat_rows(self.cross_cache, cross, pad_dim=2) if self.rows else cross
        self.self_mask = (
            torch.cat([self.self_mask, mask.new_zeros(n, past)]) if self.rows else mask.new_zeros(n, 0)
        )
        self.cross_mask = _pad_cat(self.cross_mask, mask) if self.rows else mask
        self.last = torch.cat([self.last, torch.full((n,), self.start, dtype=torch.long, device=self.device)])
        seen = torch.zeros(n, self.vocab, dtype=torch.bool, device=self.device)
        seen[:, self.start] = True  # the decoder start token counts as seen, as in transformers
        self.seen = torch.cat([self.seen, seen])
        joining = [
            Running(key, decoding, len(ids))
            for key, ids, decoding in zip(keys, input_ids, decodings, strict=True)
        ]
        self.rows += joining
        self.chooser = self.chooser.concatenate(
            TokenChooser([r.decoding for r in joining], self.eos, self.device)
        )

    @torch.inference_mode()
    def step(self) -> list[tuple[K, GenerationOutput]]:
        """Advance every running row by one token; returns the rows that finished, and drops them."""
        if not self.rows:
            return []
        self.self_mask = torch.cat([self.self_mask, self.self_mask.new_ones(len(self.rows), 1)], dim=1)
        logits, self.self_cache = self.decoder.step(
            self.last, self.self_cache, self.self_mask, self.cross_cache, self.cross_mask
        )
        generated = torch.tensor([len(r.tokens) for r in self.rows], device=self.device)
        adjusted = self.chooser.adjust(logits, self.seen, generated)
        tokens = self.chooser.choose(adjusted)
        logprobs = self.chooser.logprobs(adjusted, tokens) if self.chooser.wants_logprobs else None
        finished: list[tuple[K, GenerationOutput]] = []
        keep: list[int] = []
        for b, (row, token) in enumerate(zip(self.rows, tokens.tolist(), strict=True)):
            if row.decoding.push(token, self.eos, logprobs[b] if logprobs else None):
                finished.append((row.key, row.decoding.output(self.model.tokenizer, row.input_tokens)))
            else:
                keep.append(b)
        self.seen[torch.arange(len(self.rows), device=self.device), tokens] = True
        self.last = tokens
        if len(keep) < len(self.rows):
            self._keep(keep)
        return finished

    def drop(self, keys: set[K]) -> None:
        """Remove the rows of ``keys`` (cancelled by their callers) before the next step."""
        keep = [b for b, row in enumerate(self.rows) if row.key not in keys]
        if len(keep) < len(self.rows):
            self._keep(keep)

    def _keep(self, keep: list[int]) -> None:
        """Drop finished rows, then the padding columns no remaining row needs."""
        self.rows = [self.rows[b] for b in keep]
        if not self.rows:
            self._reset()
            return
        self.chooser = self.chooser.filter(keep)
        index = torch.tensor(keep, device=self.device)
        self.self_mask = self.self_mask.index_select(0, index)
        self.cross_mask = self.cross_mask.index_select(0, index)
        self.last = self.last.index_select(0, index)
        self.seen = self.seen.index_select(0, index)
        lead = int((self.self_mask.cumsum(1) == 0).sum(1).min())  # left padding shared by every row
        used = int(self.cross_mask.sum(1).max())  # encoder states are right-padded
        self.self_mask = self.self_mask[:, lead:]
        self.cross_mask = self.cross_mask[:, :used]
        self.self_cache = [
            (k.index_select(0, index)[:, :, lead:], v.index_select(0, index)[:, :, lead:])
            for k, v in self.self_cache
        ]
        self.cross_cache = [
            (k.index_select(0, index)[:, :, :used], v.index_select(0, index)[:, :, :used])
            for k, v in self.cross_cache
        ]


def _pad_cat(old: torch.Tensor, new: torch.Tensor) -> torch.Tensor:
    """Concatenate right-padded (B, S) masks of different widths."""
    width = max(old.shape[1], new.shape[1])
    return torch.cat([F.pad(old, (0, width - old.shape[1])), F.pad(new, (0, width - new.shape[1]))])


def _concat_rows(old, new, pad_dim: int):
    """Concatenate per-layer (k, v) caches along rows, right-padding the position dim to the wider one."""
    merged = []
    for (ok, ov), (nk, nv) in zip(old, new, strict=True):
        width = max(ok.shape[pad_dim], nk.shape[pad_dim])
        pads = [(0, 0, 0, width - t.shape[pad_dim]) for t in (ok, nk)]
        merged.append(
            (
                torch.cat([F.pad(ok, pads[0]), F.pad(nk, pads[1])]),
                torch.cat([F.pad(ov, pads[0]), F.pad(nv, pads[1])]),
            )
        )
    return merged
