"""Objective builders on exact token values: span corruption (T5), prefix-LM, supervised pairs, batching."""

from __future__ import annotations

import numpy as np
import pytest

from training.common.losses import IGNORE_INDEX
from training.pretrain.objectives import (
    Ragged,
    corrupt_spans,
    length_sorted_chunks,
    noise_mask,
    prefix_lm,
    random_segmentation,
    random_split,
    random_windows,
    span_corruption,
    span_corruption_lengths,
    span_counts,
    supervised_ids,
)

EOS = 1
SENTINELS = [99, 98, 97, 96]  # <extra_id_0> is the last id of the vocabulary, as in T5


@pytest.mark.parametrize(
    ("inputs_length", "expected"),
    [(512, (568, 114)), (256, (284, 58)), (128, (141, 29)), (32, (34, 8))],
)
def test_span_corruption_lengths_match_t5(inputs_length: int, expected: tuple[int, int]) -> None:
    # 512 -> (568, 114) are the raw and target lengths of the T5 paper's C4 span-corruption runs.
    assert span_corruption_lengths(inputs_length, 0.15, 3.0) == expected


def test_corrupt_spans_exact_values() -> None:
    tokens = np.arange(10, 30).reshape(1, 20)
    mask = noise_mask(np.array([[3, 5, 6]]), np.array([[2, 1, 3]]))
    assert mask.astype(int).tolist() == [[0, 0, 0, 1, 1, 0, 0, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 1, 1, 1]]
    inputs, targets = corrupt_spans(tokens, mask, SENTINELS, EOS)
    assert inputs.tolist() == [[10, 11, 12, 99, 15, 16, 17, 18, 19, 98, 21, 22, 23, 24, 25, 26, 97, EOS]]
    assert targets.tolist() == [[99, 13, 14, 98, 20, 97, 27, 28, 29, EOS]]


def test_corrupt_spans_needs_enough_sentinels() -> None:
    mask = noise_mask(np.array([[1, 1, 1]]), np.array([[1, 1, 1]]))
    with pytest.raises(ValueError, match="sentinels"):
        corrupt_spans(np.arange(6).reshape(1, 6), mask, [99, 98], EOS)


def test_random_segmentation_sums_and_is_seeded() -> None:
    first = random_segmentation(np.random.default_rng(0), 500, 12, 4)
    again = random_segmentation(np.random.default_rng(0), 500, 12, 4)
    assert np.array_equal(first, again)
    assert (first.sum(axis=1) == 12).all() and (first >= 1).all()
    assert len({tuple(row) for row in first}) > 50  # many of the 165 compositions of 12 into 4 parts


def test_span_corruption_shapes_and_content() -> None:
    rows = np.arange(2 * 284).reshape(2, 284) + 200
    inputs, targets = span_corruption(rows, np.random.default_rng(1), list(range(199, 99, -1)), EOS)
    assert inputs.shape == (2, 256) and targets.shape == (2, 58)  # exactly span_corruption_lengths(256)
    num_noise, num_spans = span_counts(284, 0.15, 3.0)
    assert (num_noise, num_spans) == (43, 14)
    for row, inp, tgt in zip(rows, inputs, targets, strict=True):
        assert inp[-1] == EOS and tgt[-1] == EOS
        kept, dropped = inp[inp >= 200], tgt[tgt >= 200]
        assert len(dropped) == num_noise and sorted([*kept, *dropped]) == row.tolist()
        assert inp[inp < 200][:-1].tolist() == list(range(199, 199 - num_spans, -1))  # sentinels in order
        assert tgt[tgt < 200][:-1].tolist() == list(range(199, 199 - num_spans, -1))
        assert inp[0] >= 200  # T5 rows start with a kept span


def test_prefix_lm_exact_values() -> None:
    rows = np.array([[5, 6, 7, 8, 9], [15, 16, 17, 18, 19]])
    inputs, targets = prefix_lm(rows, 2, EOS)
    assert inputs.tolist() == [[5, 6, EOS], [15, 16, EOS]]
    assert targets.tolist() == [[7, 8, 9, EOS], [17, 18, 19, EOS]]
    with pytest.raises(ValueError, match="split"):
        prefix_lm(rows, 5, EOS)


def test_random_split_bounds_and_grid() -> None:
    rng = np.random.default_rng(0)
    splits = {random_split(rng, 256, 16, 32, multiple=8) for _ in range(500)}
    assert min(splits) == 16 and max(splits) == 224 and all(s % 8 == 0 for s in splits)
    with pytest.raises(ValueError, match="cannot give"):
        random_split(rng, 10, 6, 6)


def test_random_windows_are_contiguous_slices() -> None:
    stream = np.arange(100, dtype=np.int32)
    windows = random_windows(np.random.default_rng(0), stream, 50, 7)
    assert windows.shape == (50, 7) and (np.diff(windows, axis=1) == 1).all()
    assert windows.min() >= 0 and windows.max() <= 99
    with pytest.raises(ValueError, match="fewer than one window"):
        random_windows(np.random.default_rng(0), stream, 1, 101)


def test_supervised_ids_prefix_eos_and_truncation() -> None:
    assert supervised_ids([3, 4], [10, 11, 12], [20, 21], EOS, 16, 16) == (
        [3, 4, 10, 11, 12, EOS],
        [20, 21, EOS],
    )
    assert supervised_ids([3, 4], [10, 11, 12], [20, 21, 22], EOS, 4, 3) == ([3, 4, 10, EOS], [20, 21, EOS])


def test_ragged_padding() -> None:
    ragged = Ragged.from_lists([[1, 2, 3], [4], [5, 6]])
    assert ragged.lengths.tolist() == [3, 1, 2]
    assert ragged.padded(np.array([2, 1]), pad_id=0).tolist() == [[5, 6], [4, 0]]
    assert ragged.padded(np.array([0, 1]), pad_id=IGNORE_INDEX, multiple=4).tolist() == [
        [1, 2, 3, IGNORE_INDEX],
        [4, IGNORE_INDEX, IGNORE_INDEX, IGNORE_INDEX],
    ]


def test_length_sorted_chunks_exact() -> None:
    source = np.array([30, 5, 6, 31, 7, 29])
    target = np.array([3, 9, 2, 4, 1, 5])
    chunks = length_sorted_chunks(source, target, num_chunks=2, multiple=8)
    # Source buckets of 8: [4, 1, 1, 4, 1, 4]. Bucket 1 is odd, so its targets run down (rows 1, 2, 4:
    # targets 9, 2, 1); bucket 4 runs up (rows 0, 3, 5). Costs (bucket * 8 + target) 17 10 9 35 36 37
    # add up to 144; the cut falls where the running sum first reaches 72 (at 107, the fifth row).
    assert [c.tolist() for c in chunks] == [[1, 2, 4, 0], [3, 5]]
    assert [c.tolist() for c in length_sorted_chunks(source, target, num_chunks=3)] == [
        [1, 2, 4],
        [0],
        [3, 5],
    ]
    assert sorted(np.concatenate(chunks).tolist()) == list(range(6))


def test_length_sorted_chunks_balance_cost() -> None:
    rng = np.random.default_rng(0)
    source, target = rng.integers(5, 120, 5000), rng.integers(5, 60, 5000)
    chunks = length_sorted_chunks(source, target, num_chunks=50)
    assert len(chunks) == 50
    costs = [len(c) * (source[c].max() + target[c].max()) for c in chunks]
    useful = (source + target).sum()
    assert sum(costs) < 1.25 * useful  # padding stays small
    assert max(costs) < 2.5 * (useful / 50)  # the chunk of the longest examples costs most
