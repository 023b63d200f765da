"""The continuous decoder's preallocated caches: rows join and leave in every order, the buffer moves
and grows, and every row keeps exactly its own keys and values."""

from __future__ import annotations

import itertools

import pytest
import torch

from adapters import GenerationParams
from adapters.decoding.continuous import ContinuousBatch
from adapters.decoding.t5_step import StepDecoder
from tests.conftest import TEXTS, make_model


@pytest.fixture(scope="module")
def model():
    return make_model("t5")


@pytest.fixture(scope="module")
def decoder(model):
    return StepDecoder(model.base.model)


def _write_step(cache, ids: list[int], steps: dict[int, int]) -> None:
    """What a step does to the cache, with values that name their row and step: the k-th column
    row ``r`` writes holds r * 1000 + k (in every layer, keys and values)."""
    cache.reserve_column()
    for b, row in enumerate(ids):
        cache.self_kv[:, :, b, :, cache.t, :] = row * 1000 + steps[row]
        steps[row] += 1
    cache.t += 1


@pytest.mark.parametrize("join_order", list(itertools.permutations(range(3))))
@pytest.mark.parametrize("leave_order", list(itertools.permutations(range(3))))
def test_cache_rows_keep_their_own_columns_in_every_order(decoder, join_order, leave_order):
    """Three rows join one a step in ``join_order`` and leave one a step in ``leave_order``, in a
    buffer of 2 columns growing by 2 (so it both moves its columns to the front and grows)."""
    cache = decoder.new_cache(rows=1, columns=2)
    w = decoder.weights
    ids: list[int] = []
    steps: dict[int, int] = {}
    widest = 0
    events = [("join", r) for r in join_order] + [("step", None)] * 2 + [("leave", r) for r in leave_order]
    for kind, row in events:
        if kind == "join":
            length = 2 + row
            kv = torch.full((len(w.layers), 2, 1, w.heads, length, w.head_dim), float(row))
            cache.join(kv, torch.tensor([length]))
            ids.append(row)
            steps[row] = 0
        elif kind == "leave":
            keep = [b for b, r in enumerate(ids) if r != row]
            cache.keep(keep)
            ids = [ids[b] for b in keep]
        if ids:  # (a batch with no rows does not step)
            _write_step(cache, ids, steps)
        _check_values(cache, ids, steps)
        widest = max(widest, cache.self_kv.shape[4])
    assert cache.rows == 0 and cache.t == 0 and cache.start == 0  # empty: starts afresh
    assert widest > 2  # it grew


def _check_values(cache, ids: list[int], steps: dict[int, int]) -> None:
    """Row by row: exactly ``steps[row]`` own columns, holding that row's values in the order it
    wrote them, the bias attends to exactly them, and the cross keys/values are the row's own."""
    assert cache.rows == len(ids)
    if not ids:
        return
    assert cache.start == int(cache.joined[: cache.rows].min())
    assert cache.enc_used == max(2 + row for row in ids)
    cache.reserve_column()  # as the next step does, before it asks for the bias
    bias = cache.self_bias()
    masked = torch.finfo(cache.dtype).min
    for b, row in enumerate(ids):
        own = list(range(int(cache.joined[b]), cache.t))
        assert len(own) == steps[row], (row, own, steps[row])
        values = cache.self_kv[:, :, b, :, own[0] : own[-1] + 1, :]
        want = row * 1000 + torch.arange(steps[row], dtype=values.dtype)
        assert torch.equal(values, want[None, None, None, :, None].expand_as(values)), (row, values[0, 0, 0])
        attended = (bias[b, 0, 0] > masked / 2).nonzero().flatten().tolist()
        assert attended == [*own, cache.t], (row, attended, own)  # and the column it writes next
        assert int(cache.enc_len[b]) == 2 + row
        cross = cache.cross_kv[:, :, b, :, : 2 + row, :]
        assert torch.equal(cross, torch.full_like(cross, float(row)))


def test_buffer_moves_its_columns_to_the_front_or_grows(decoder):
    w = decoder.weights
    cache = decoder.new_cache(rows=2, columns=4)

    def join(row):
        kv = torch.full((len(w.layers), 2, 1, w.heads, 2 + row, w.head_dim), float(row))
        cache.join(kv, torch.tensor([2 + row]))

    steps = {0: 0, 1: 0, 2: 0}
    join(0)
    for _ in range(3):
        _write_step(cache, [0], steps)
    join(1)
    _write_step(cache, [0, 1], steps)  # t = 4: the buffer is full
    cache.keep([1])  # row 0 leaves: row 1's one column (3) is all that is used
    _write_step(cache, [1], steps)  # more than half is free at the front: moved, not grown
    assert cache.self_kv.shape[4] == 4 and (cache.start, cache.t) == (0, 2)
    _check_values(cache, [1], steps)
    join(2)
    _write_step(cache, [1, 2], steps)
    _write_step(cache, [1, 2], steps)  # t = 4 again, with row 1 from column 0: grown by 4
    _write_step(cache, [1, 2], steps)
    assert cache.self_kv.shape[4] == 8 and (cache.start, cache.t) == (0, 5)
    assert steps == {0: 4, 1: 5, 2: 3}
    _check_values(cache, [1, 2], steps)


# ------------------------------------------------------------------------------- through decoding


@pytest.fixture(scope="module")
def alone_outputs(model):
    """Each of three rows alone, at each length it is given below."""
    ids = model.encode(TEXTS[:3])
    out = {}
    for row in range(3):
        for length in range(1, 6):
            params = GenerationParams(max_new_tokens=length, min_new_tokens=length)
            out[row, length] = model.generate([TEXTS[row]], [row + 1], params)[0].token_ids
    return ids, out


@pytest.mark.parametrize("join_order", list(itertools.permutations(range(3))))
@pytest.mark.parametrize("leave_order", list(itertools.permutations(range(3))))
def test_decoding_rows_join_and_leave_in_every_order(model, alone_outputs, join_order, leave_order):
    """Rows join one a step in ``join_order`` and finish in ``leave_order`` (by their lengths), in a
    cache of 2 columns: each row's tokens equal the row decoded alone."""
    ids, alone = alone_outputs
    # a row joining at step j and leaving k-th has to run long enough to outlast the rows before it
    length = {}
    for k, row in enumerate(leave_order):
        joined_at = join_order.index(row)
        length[row] = max(1, 3 + k - joined_at)
    batch: ContinuousBatch[int] = ContinuousBatch(model, columns=2)
    done = {}
    for step in range(20):
        if step < 3:
            row = join_order[step]
            params = GenerationParams(max_new_tokens=length[row], min_new_tokens=length[row])
            batch.admit([row], [ids[row]], [row + 1], [params])
        done.update(batch.step())
        if len(done) == 3:
            break
    assert list(done) == list(leave_order)
    for row in range(3):
        assert done[row].token_ids == alone[row, length[row]], (row, join_order, leave_order)
    assert len(batch) == 0


def test_compiled_step_gives_the_eager_tokens(model):
    """The step through torch.compile (what ``--compile-decoder`` serves): the start-up self-check
    passes on it, and rows joining and leaving get the eager step's tokens."""
    assert StepDecoder.of(model.base.model, compile=True).self_check(steps=4) < 1e-4
    ids = model.encode(TEXTS[:4])
    params = [GenerationParams(max_new_tokens=n, min_new_tokens=n) for n in (6, 3, 5, 4)]
    outputs = {}
    for compiled in (False, True):
        batch: ContinuousBatch[int] = ContinuousBatch(model, compile=compiled, columns=4)
        assert batch.decoder.compiled is compiled
        done = {}
        batch.admit([0, 1], ids[:2], [1, 2], params[:2])
        done.update(batch.step())
        batch.admit([2, 3], ids[2:], [3, 0], params[2:])
        while len(batch):
            done.update(batch.step())
        outputs[compiled] = [done[i].token_ids for i in range(4)]
    assert outputs[True] == outputs[False]
    assert [len(t) for t in outputs[True]] == [6, 3, 5, 4]
