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

from .params import GenerationOutput, GenerationParams
from .sampling import RowDecoding, TokenChooser
from .t5_step import CONTINUOUS_TYPES, Attention, DecoderCache, StepDecoder

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
    ``attention`` and ``compile``: the decoder step's (``t5_step.StepDecoder``); ``columns``: the
    decoder positions the cache holds at first and grows by.
    """

    def __init__(
        self, model, attention: Attention = "sdpa", compile: bool = False, columns: int = 64
    ) -> None:
        self.model = model
        base = model.base.model
        self.decoder = StepDecoder.of(base, attention, compile)
        self.columns = columns
        self.eos = model.tokenizer.eos_token_id
        self.start = base.config.decoder_start_token_id
        self.vocab = base.config.vocab_size
        self.device = model.base.device
        self.rows: list[Running[K]] = []
        self.cache: DecoderCache = self.decoder.new_cache(columns=self.columns)
        self._reset()

    def _reset(self) -> None:
        self.cache.keep([])  # no rows; its buffers (grown to the batch sizes seen) serve the next ones
        self.last = torch.zeros(0, dtype=torch.long, device=self.device)  # (B,) the tokens fed next
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
        self.cache.join(self.decoder.cross_kv(encoded), mask.sum(1))
        n = len(keys)
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
        logits = self.decoder.step(self.last, self.cache)
        self.cache.t += 1
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
        if self.chooser.uses_penalty:  # (a row that joins with a penalty starts its own record)
            self.seen[torch.arange(len(self.rows), device=self.device), tokens] = True
        self.last = tokens
        if len(keep) < len(self.rows):
            self._keep(keep)
        return finished

    @torch.inference_mode()  # the caches are inference tensors
    def drop(self, keys: set[K]) -> None:
        """Remove the rows of ``keys`` (cancelled by their callers) before the next step."""
        keep = [b for b, row in enumerate(self.rows) if row.key not in keys]
        if len(keep) < len(self.rows):
            self._keep(keep)

    def _keep(self, keep: list[int]) -> None:
        """Keep only the rows ``keep`` (ascending indices into the batch)."""
        self.rows = [self.rows[b] for b in keep]
        if not self.rows:
            self._reset()
            return
        self.chooser = self.chooser.filter(keep)
        index = torch.tensor(keep, device=self.device)
        self.last = self.last.index_select(0, index)
        self.seen = self.seen.index_select(0, index)
        self.cache.keep(keep)
