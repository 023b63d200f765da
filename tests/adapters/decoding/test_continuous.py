"""Continuous batching: rows joining and leaving between steps get exactly what they get alone."""

from __future__ import annotations

import pytest
import torch

from adapters import GenerationParams
from adapters.decoding.continuous import ContinuousBatch
from adapters.decoding.t5_step import StepDecoder
from tests.conftest import TEXTS, make_model


@pytest.fixture(scope="module")
def model():
    return make_model("t5")


def alone(model, text, slot, params):
    return model.generate([text], [slot], params)[0]


def test_step_decoder_matches_the_base_forward(model):
    assert StepDecoder(model.base.model).self_check(steps=5) < 1e-5


def test_rows_joining_at_different_steps_equal_each_row_alone(model):
    params = [
        GenerationParams(max_new_tokens=9),
        GenerationParams(max_new_tokens=3),
        GenerationParams(max_new_tokens=12, repetition_penalty=1.7),
        GenerationParams(max_new_tokens=7, do_sample=True, temperature=30.0, top_k=40, seed=5),
        GenerationParams(max_new_tokens=8, min_new_tokens=8),
        GenerationParams(max_new_tokens=10, do_sample=True, temperature=20.0, top_p=0.8, seed=6),
    ]
    slots = [1, 2, 3, 0, 1, 3]
    texts = TEXTS[:6]
    ids = model.encode(texts)
    batch = ContinuousBatch(model)
    done: dict[int, object] = {}
    # rows 0-2 start together; 3 joins after 2 steps; 4-5 join after 5 steps (some have finished by then)
    schedule = {0: [0, 1, 2], 2: [3], 5: [4, 5]}
    step = 0
    while len(done) < len(texts):
        if step in schedule:
            rows = schedule[step]
            batch.admit(rows, [ids[r] for r in rows], [slots[r] for r in rows], [params[r] for r in rows])
        for key, out in batch.step():
            done[key] = out
        step += 1
        assert step < 100
    for r in range(len(texts)):
        expected = alone(model, texts[r], slots[r], params[r])
        got = done[r]
        assert got.token_ids == expected.token_ids, r
        assert (got.finish_reason, got.generated_tokens, got.text) == (
            expected.finish_reason,
            expected.generated_tokens,
            expected.text,
        )
    assert len(batch) == 0


def test_many_rows_of_mixed_lengths(model):
    params = GenerationParams(max_new_tokens=6)
    slots = [1, 2, 3, 0] * 4
    texts = (TEXTS * 2)[:16]
    batch = ContinuousBatch(model)
    batch.admit(list(range(8)), model.encode(texts[:8]), slots[:8], [params] * 8)
    outputs = dict(batch.step())
    batch.admit(list(range(8, 16)), model.encode(texts[8:]), slots[8:], [params] * 8)
    while len(batch):
        outputs.update(batch.step())
    expected = model.generate(texts, slots, params)
    assert [outputs[i].token_ids for i in range(16)] == [e.token_ids for e in expected]


def test_beams_are_refused(model):
    with pytest.raises(ValueError, match="beams"):
        ContinuousBatch(model).admit([0], model.encode(["x"]), [0], [GenerationParams(num_beams=2)])


def test_gpt2_is_refused():
    with pytest.raises(ValueError, match="continuous batching supports"):
        StepDecoder(make_model("gpt2").base.model)


def test_padding_is_trimmed_when_long_rows_leave(model):
    batch = ContinuousBatch(model)
    long_text, short = "a much longer input text " * 4, "hi"
    batch.admit(["long"], model.encode([long_text]), [0], [GenerationParams(max_new_tokens=2)])
    batch.step()
    batch.admit(["short"], model.encode([short]), [0], [GenerationParams(max_new_tokens=5)])
    while "long" in [r.key for r in batch.rows]:
        batch.step()
    cache = batch.cache
    assert cache.rows == 1 and cache.enc_used == len(model.encode([short])[0])  # the long input's columns go
    assert cache.start == int(cache.joined[0])  # no column before the short row's first is attended
    # positions fed so far: the start token and every generated token but the newest (fed next step)
    assert cache.t - cache.start == len(batch.rows[0].tokens)


def test_self_check_with_tied_embeddings_and_v1_1_feed_forward():
    from transformers import T5Config, T5ForConditionalGeneration

    torch.manual_seed(0)
    config = T5Config(
        d_model=32,
        d_ff=64,
        num_layers=2,
        num_heads=2,
        d_kv=16,
        vocab_size=100,
        decoder_start_token_id=0,
        pad_token_id=0,
        eos_token_id=1,
        tie_word_embeddings=True,
        feed_forward_proj="gated-gelu",
        initializer_factor=4.0,
    )
    model = T5ForConditionalGeneration(config).eval()
    assert StepDecoder(model).self_check(steps=4) < 1e-5
