"""Tokenise once, batch by length, pad per batch.

Shapes: B batch rows, Ts source tokens, Tt target tokens (each padded to the batch's longest row).

Sources are tokenised with ``AdaptedModel.encode``, the serving path itself (T5: the tokenizer's
ids ending in EOS; decoder-only: the ids plus an EOS separator). Targets are the tokenizer's ids
ending in exactly one EOS, which is what generation emits before it stops.

Batches hold rows of similar length (shuffled mega-chunks sorted by length), so padding stays small.
The order of batches is a pure function of (seed, epoch): resuming at step n recomputes the order and
skips the micro-batches already used, with no data-loader state to save.
"""

from __future__ import annotations

import dataclasses
import random
from collections.abc import Sequence
from dataclasses import dataclass

import torch

from adapters import AdaptedModel
from training.common.losses import IGNORE_INDEX  # padding, and the source of decoder-only rows
from training.data import Example
from training.errors import DataFormatError


@dataclass
class TokenizedData:
    """Token ids of a training set, computed once up front."""

    sources: list[list[int]]
    targets: list[list[int]]
    dropped: int = 0  # pairs too long for the model's positions (decoder-only bases)

    def __len__(self) -> int:
        return len(self.sources)

    def lengths(self) -> list[int]:
        return [len(s) + len(t) for s, t in zip(self.sources, self.targets, strict=True)]


def _truncate(row: list[int], limit: int | None) -> list[int]:
    """Keep the first limit-1 tokens and the last one (the EOS) when a row is longer than limit."""
    if limit is None or len(row) <= limit:
        return row
    return row[: limit - 1] + row[-1:]


def tokenize_examples(
    model: AdaptedModel,
    examples: Sequence[Example],
    max_source_tokens: int | None = None,
    max_target_tokens: int | None = None,
    prompt_length: int = 0,
) -> TokenizedData:
    """Source and target ids of every example, truncated to the limits (EOS kept at the end).

    For a decoder-only base, pairs whose prompt + source + target exceed the model's positions are
    dropped and counted in ``dropped``.
    """
    tokenizer = model.tokenizer
    eos = tokenizer.eos_token_id
    sources = model.encode([e.source for e in examples])
    targets = tokenizer([e.target for e in examples], add_special_tokens=model.is_encoder_decoder)[
        "input_ids"
    ]
    data = TokenizedData([], [])
    limit = model.base.max_positions if not model.is_encoder_decoder else None
    for source, target in zip(sources, targets, strict=True):
        target = list(target)
        if not target or target[-1] != eos:
            target.append(eos)
        source, target = _truncate(source, max_source_tokens), _truncate(target, max_target_tokens)
        if limit is not None and prompt_length + len(source) + len(target) > limit:
            data.dropped += 1
            continue
        data.sources.append(source)
        data.targets.append(target)
    return data


# ------------------------------------------------------------------------------------------ order


class BatchStream:
    """An endless, deterministic sequence of length-bucketed batches (lists of example indices).

    Each epoch shuffles the examples with ``seed + epoch``, cuts them into chunks of
    ``batch_size * bucket_batches`` rows, sorts each chunk by length and slices it into batches, then
    shuffles the batches. ``batch(i)`` is the i-th micro-batch across epochs.
    """

    def __init__(self, lengths: Sequence[int], batch_size: int, seed: int, bucket_batches: int = 50) -> None:
        if not lengths:
            raise DataFormatError("no training examples left: check the data files and the token limits")
        self.lengths = list(lengths)
        self.batch_size = batch_size
        self.seed = seed
        self.bucket_batches = bucket_batches
        self._cache: dict[int, list[list[int]]] = {}
        self.batches_per_epoch = len(self._order(0))

    def _order(self, epoch: int) -> list[list[int]]:
        if epoch not in self._cache:
            self._cache = {epoch: self._shuffled(epoch)}  # one epoch at a time is all a run reads
        return self._cache[epoch]

    def _shuffled(self, epoch: int) -> list[list[int]]:
        rng = random.Random(self.seed * 1_000_003 + epoch)
        indices = list(range(len(self.lengths)))
        rng.shuffle(indices)
        chunk = self.batch_size * self.bucket_batches
        batches: list[list[int]] = []
        for start in range(0, len(indices), chunk):
            part = sorted(indices[start : start + chunk], key=self.lengths.__getitem__)
            batches.extend(part[i : i + self.batch_size] for i in range(0, len(part), self.batch_size))
        rng.shuffle(batches)
        return batches

    def batch(self, index: int) -> list[int]:
        epoch, within = divmod(index, self.batches_per_epoch)
        return self._order(epoch)[within]


# ------------------------------------------------------------------------------------------ padding


@dataclass
class Batch:
    """One padded micro-batch, built on the host so that the forward needs no host sync.

    input_ids (B, T): the sources (encoder-decoder), or each source followed by its target
    (decoder-only), right-padded. attention_mask (B, T): 1 on real tokens. adapt_mask (B, T) bool: the
    source tokens, which the adapter MLP changes. labels: the target ids, (B, Tt) padded with
    IGNORE_INDEX (encoder-decoder) or flat (N,) (decoder-only), where loss_index (N,) holds the flat
    b * T + t position whose output predicts each label. ``num_*`` are host ints.
    """

    input_ids: torch.Tensor
    attention_mask: torch.Tensor
    adapt_mask: torch.Tensor
    labels: torch.Tensor
    loss_index: torch.Tensor | None
    num_target_tokens: int
    num_tokens: int

    def tensors(self) -> tuple[torch.Tensor, ...]:
        """The forward's positional arguments."""
        extra = () if self.loss_index is None else (self.loss_index,)
        return (self.input_ids, self.attention_mask, self.adapt_mask, self.labels, *extra)

    def to(self, device: torch.device) -> Batch:
        def move(t: torch.Tensor) -> torch.Tensor:
            return t.to(device, non_blocking=device.type == "cuda")

        index = None if self.loss_index is None else move(self.loss_index)
        return Batch(
            move(self.input_ids),
            move(self.attention_mask),
            move(self.adapt_mask),
            move(self.labels),
            index,
            self.num_target_tokens,
            self.num_tokens,
        )


def _pad(rows: Sequence[Sequence[int]], value: int) -> torch.Tensor:
    out = torch.full((len(rows), max(len(r) for r in rows)), value, dtype=torch.long)
    for b, row in enumerate(rows):
        out[b, : len(row)] = torch.tensor(row, dtype=torch.long)
    return out


def collate(
    data: TokenizedData, indices: Sequence[int], pad_id: int, encoder_decoder: bool, pin: bool = False
) -> Batch:
    """Pad the examples ``indices`` into a Batch laid out for the model family (see Batch)."""
    sources = [data.sources[i] for i in indices]
    targets = [data.targets[i] for i in indices]
    target_tokens = sum(map(len, targets))
    rows = sources if encoder_decoder else [s + t for s, t in zip(sources, targets, strict=True)]
    input_ids = _pad(rows, pad_id)  # (B, T)
    width = input_ids.shape[1]
    positions = torch.arange(width)[None, :]
    attention_mask = (positions < torch.tensor([len(r) for r in rows])[:, None]).long()
    adapt_mask = positions < torch.tensor([len(s) for s in sources])[:, None]
    if encoder_decoder:
        labels, loss_index = _pad(targets, IGNORE_INDEX), None  # (B, Tt)
    else:  # position t predicts token t + 1: the last source token (the EOS separator) the first target
        labels = torch.tensor([tok for t in targets for tok in t], dtype=torch.long)  # (N,)
        loss_index = torch.tensor(
            [
                b * width + len(s) - 1 + k
                for b, (s, t) in enumerate(zip(sources, targets, strict=True))
                for k in range(len(t))
            ],
            dtype=torch.long,
        )
    batch = Batch(
        input_ids,
        attention_mask,
        adapt_mask,
        labels,
        loss_index,
        target_tokens,
        target_tokens + sum(map(len, sources)),
    )
    if pin:  # page-locked host memory: the copy to the GPU can overlap with compute
        batch = dataclasses.replace(
            batch,
            **{
                f: getattr(batch, f).pin_memory()
                for f in ("input_ids", "attention_mask", "adapt_mask", "labels")
            },
            loss_index=None if loss_index is None else loss_index.pin_memory(),
        )
    return batch
