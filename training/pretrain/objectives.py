"""Pretraining objectives on token ids: span corruption, prefix-LM, supervised pairs, and batching.

Everything here is pure NumPy on int32 token ids, vectorised over the rows of a batch, and
deterministic for a given `numpy.random.Generator`. The tensors and the model live in `model.py`.

Shapes: N rows in a batch, L raw tokens per row, S noise spans per row.

- Span corruption follows T5 (Raffel et al. 2020, `t5.data.preprocessors.span_corruption`): 15% of
  the tokens in spans of mean length 3; each noise span becomes one sentinel in the input, and the
  target lists each sentinel followed by the span it replaced, then `</s>`.
- Prefix-LM (T5's "prefix_lm", Lester et al. 2021's "LM adaptation"): a window of text is cut at a
  split point; the encoder reads the prefix, the decoder writes the whole continuation. This is the
  objective that teaches the decoder to write whole sentences.
- Supervised pairs: a T5-style text prefix ("translate French to English: ") + source -> target.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

# --- span corruption ------------------------------------------------------------------------------


def span_corruption_lengths(
    inputs_length: int, noise_density: float = 0.15, mean_noise_span_length: float = 3.0
) -> tuple[int, int]:
    """(raw tokens per row, target length) so that a corrupted row is exactly `inputs_length` long.

    Both lengths count the final `</s>`. This is T5's `random_spans_helper`: the largest raw length
    whose corrupted input (non-noise tokens + one sentinel per span + `</s>`) fits `inputs_length`.
    E.g. inputs_length=512 -> (568, 114), the numbers of the T5 paper's C4 runs.
    """

    def lengths(tokens_length: int) -> tuple[int, int]:
        num_noise = int(round(tokens_length * noise_density))
        num_nonnoise = tokens_length - num_noise
        num_spans = int(round(num_noise / mean_noise_span_length))
        return num_nonnoise + num_spans + 1, num_noise + num_spans + 1

    tokens_length = inputs_length - 1
    while lengths(tokens_length + 1)[0] <= inputs_length:
        tokens_length += 1
    corrupted, targets_length = lengths(tokens_length)
    if noise_density == 0.5 and targets_length > corrupted:  # T5's tie-break, kept for exactness
        tokens_length -= 1
        targets_length -= 1
    return tokens_length, targets_length


def span_counts(length: int, noise_density: float, mean_noise_span_length: float) -> tuple[int, int]:
    """(noise tokens, noise spans) for a row of `length` raw tokens, as T5 rounds them."""
    num_noise = min(max(int(round(length * noise_density)), 1), length - 1)
    num_spans = max(int(round(num_noise / mean_noise_span_length)), 1)
    return num_noise, num_spans


def random_segmentation(rng: np.random.Generator, rows: int, num_items: int, num_segments: int) -> np.ndarray:
    """Split `num_items` into `num_segments` non-empty parts at random, independently per row.

    Returns (rows, num_segments) int64 lengths, each row summing to `num_items`; every composition is
    equally likely (T5's `_random_segmentation`: a random permutation of segment-start markers).
    """
    assert 1 <= num_segments <= num_items, f"cannot cut {num_items} items into {num_segments} parts"
    markers = np.zeros((rows, num_items - 1), dtype=np.int8)
    markers[:, : num_segments - 1] = 1
    markers = rng.permuted(markers, axis=1)
    starts = np.concatenate([np.ones((rows, 1), dtype=np.int8), markers], axis=1)  # item i starts a segment
    segment_ids = np.cumsum(starts, axis=1) - 1  # (rows, num_items)
    lengths = np.zeros((rows, num_segments), dtype=np.int64)
    np.add.at(lengths, (np.arange(rows)[:, None], segment_ids), 1)
    return lengths


def noise_mask(nonnoise_lengths: np.ndarray, noise_lengths: np.ndarray) -> np.ndarray:
    """(N, L) bool mask from (N, S) span lengths; rows start with a non-noise span and alternate."""
    spans = np.stack([nonnoise_lengths, noise_lengths], axis=2).reshape(len(noise_lengths), -1)  # (N, 2S)
    is_noise = np.tile([False, True], noise_lengths.shape[1])
    return np.stack([np.repeat(is_noise, row) for row in spans])


def corrupt_spans(
    tokens: np.ndarray, mask: np.ndarray, sentinel_ids: Sequence[int], eos_id: int
) -> tuple[np.ndarray, np.ndarray]:
    """Apply a noise mask to (N, L) tokens: (inputs, targets), both ending with `eos_id`.

    inputs: the kept tokens, each noise span replaced by the next sentinel (`<extra_id_0>`, ...).
    targets: each sentinel followed by the tokens of the span it replaced.
    Every row of `mask` must have the same number of noise tokens and spans (true for rows made
    by `random_segmentation` with one length), so the outputs are rectangular.
    """
    sentinels = np.asarray(sentinel_ids, dtype=tokens.dtype)

    def replace(keep_mask: np.ndarray) -> np.ndarray:
        # The spans of `~keep_mask` collapse to one sentinel each, numbered from 0 within the row.
        dropped = ~keep_mask
        first = dropped & ~np.concatenate([np.zeros_like(dropped[:, :1]), dropped[:, :-1]], axis=1)
        span_index = np.cumsum(first, axis=1) - 1
        if span_index.max(initial=-1) >= len(sentinels):
            raise ValueError(f"{span_index.max() + 1} spans need more than the {len(sentinels)} sentinels")
        out = np.where(first, sentinels[np.clip(span_index, 0, None)], tokens)
        keep = keep_mask | first
        counts = keep.sum(axis=1)
        assert (counts == counts[0]).all(), "rows must keep the same number of tokens"
        body = out[keep].reshape(len(tokens), counts[0])
        return np.concatenate([body, np.full((len(tokens), 1), eos_id, dtype=tokens.dtype)], axis=1)

    return replace(~mask), replace(mask)


def span_corruption(
    tokens: np.ndarray,
    rng: np.random.Generator,
    sentinel_ids: Sequence[int],
    eos_id: int,
    noise_density: float = 0.15,
    mean_noise_span_length: float = 3.0,
) -> tuple[np.ndarray, np.ndarray]:
    """T5 span corruption of (N, L) raw token rows -> (inputs (N, Li), targets (N, Lt))."""
    rows, length = tokens.shape
    num_noise, num_spans = span_counts(length, noise_density, mean_noise_span_length)
    noise = random_segmentation(rng, rows, num_noise, num_spans)
    nonnoise = random_segmentation(rng, rows, length - num_noise, num_spans)
    return corrupt_spans(tokens, noise_mask(nonnoise, noise), sentinel_ids, eos_id)


# --- prefix-LM ------------------------------------------------------------------------------------


def prefix_lm(tokens: np.ndarray, split: int, eos_id: int) -> tuple[np.ndarray, np.ndarray]:
    """Cut (N, L) rows at `split`: inputs = tokens[:, :split] + eos, targets = tokens[:, split:] + eos.

    One split point per batch keeps the batch rectangular (no padding); batches draw their own.
    """
    rows, length = tokens.shape
    if not 0 < split < length:
        raise ValueError(f"split must be inside the row (0 < split < {length}), got {split}")
    eos = np.full((rows, 1), eos_id, dtype=tokens.dtype)
    return np.concatenate([tokens[:, :split], eos], axis=1), np.concatenate([tokens[:, split:], eos], axis=1)


def random_split(
    rng: np.random.Generator, length: int, min_prefix: int, min_target: int, multiple: int = 1
) -> int:
    """A split point uniform over [min_prefix, length - min_target], on a grid of `multiple`."""
    low, high = math.ceil(min_prefix / multiple), (length - min_target) // multiple
    if low > high:
        raise ValueError(
            f"a row of {length} tokens cannot give a prefix >= {min_prefix} and a target >= {min_target}"
        )
    return int(rng.integers(low, high + 1)) * multiple


def random_windows(rng: np.random.Generator, stream: np.ndarray, rows: int, length: int) -> np.ndarray:
    """(rows, length) windows of a 1-D token stream at uniformly random start positions."""
    if len(stream) < length:
        raise ValueError(f"the token stream has {len(stream)} tokens, fewer than one window of {length}")
    starts = rng.integers(0, len(stream) - length + 1, size=rows)
    return stream[starts[:, None] + np.arange(length)[None, :]]


# --- supervised pairs -------------------------------------------------------------------------------


@dataclass
class Ragged:
    """Variable-length int32 sequences stored flat: sequence i is tokens[offsets[i]:offsets[i + 1]]."""

    tokens: np.ndarray  # (total,) int32
    offsets: np.ndarray  # (count + 1,) int64

    @classmethod
    def from_lists(cls, sequences: Sequence[Sequence[int]]) -> Ragged:
        lengths = np.fromiter((len(s) for s in sequences), dtype=np.int64, count=len(sequences))
        offsets = np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64)
        flat = np.fromiter((t for s in sequences for t in s), dtype=np.int32, count=int(offsets[-1]))
        return cls(flat, offsets)

    def __len__(self) -> int:
        return len(self.offsets) - 1

    @functools.cached_property
    def lengths(self) -> np.ndarray:
        return np.diff(self.offsets)

    def padded(self, indices: np.ndarray, pad_id: int, multiple: int = 1) -> np.ndarray:
        """(len(indices), T) int64 rows padded with `pad_id` to T = longest rounded up to `multiple`."""
        lengths = self.lengths[indices]
        width = -(-int(lengths.max()) // multiple) * multiple
        columns = np.arange(width)[None, :]
        inside = columns < lengths[:, None]
        positions = np.minimum(self.offsets[indices][:, None] + columns, len(self.tokens) - 1)
        return np.where(inside, self.tokens[positions], pad_id).astype(np.int64)


def supervised_ids(
    prefix_ids: Sequence[int],
    source_ids: Sequence[int],
    target_ids: Sequence[int],
    eos_id: int,
    max_source_length: int,
    max_target_length: int,
) -> tuple[list[int], list[int]]:
    """(encoder ids, decoder ids) of one pair: prefix + source + eos, target + eos, each truncated
    to its maximum length with the eos kept (ids come without special tokens)."""
    source = [*prefix_ids, *source_ids][: max_source_length - 1] + [eos_id]
    target = list(target_ids)[: max_target_length - 1] + [eos_id]
    return source, target


def length_sorted_chunks(
    source_lengths: np.ndarray, target_lengths: np.ndarray, num_chunks: int, multiple: int = 8
) -> list[np.ndarray]:
    """Cut examples into `num_chunks` batches of similar lengths and about equal padded size.

    Examples are sorted by source length rounded up to `multiple`, then by target length, ascending
    in even source buckets and descending in odd ones (a "snake", so a chunk that straddles two
    buckets joins long targets with long ones). Cuts fall where the running cost (rounded source +
    target) passes equal shares of the total. Returns index arrays in sorted order; the caller
    shuffles them. Padding is typically 15-20% of the useful tokens on the real data.
    """
    count = len(source_lengths)
    if count == 0 or num_chunks < 1:
        return []
    num_chunks = min(num_chunks, count)
    buckets = -(-source_lengths // multiple)
    order = np.lexsort((np.where(buckets % 2 == 1, -target_lengths, target_lengths), buckets))
    cost = (buckets * multiple + target_lengths)[order]
    bounds = np.searchsorted(np.cumsum(cost), np.arange(1, num_chunks) * cost.sum() / num_chunks)
    bounds = np.clip(bounds, 1, count - 1)
    chunks = [chunk for chunk in np.split(order, np.unique(bounds)) if len(chunk)]
    return chunks
