"""Every decoding path gives the same tokens: the naive baseline (one row, plain InputAdapter, plain
generate), the static path (a mixed batch through AdaptedModel.generate) and continuous batching,
on T5 and on GPT-2 (which serves through the static path)."""

from __future__ import annotations

import pytest

from adapters import GenerationParams, InputAdapter
from adapters.decoding import ContinuousBatch
from server.perf.naive import generate_one
from tests.conftest import TEXTS, slot_adapters

PARAMS = [
    GenerationParams(max_new_tokens=8),
    GenerationParams(max_new_tokens=9, repetition_penalty=1.8),
    GenerationParams(max_new_tokens=7, do_sample=True, temperature=30.0, top_k=20, seed=11),
    GenerationParams(max_new_tokens=5, do_sample=True, temperature=30.0, top_p=0.7, seed=12),
    GenerationParams(max_new_tokens=6, min_new_tokens=6),
    GenerationParams(max_new_tokens=6, num_beams=2),
    GenerationParams(max_new_tokens=10, repetition_penalty=1.3, min_new_tokens=3),
]
SLOTS = [1, 2, 3, 0, 1, 2, 3]
TEXTS_USED = TEXTS[: len(PARAMS)]


def naive(model, texts, slots, params):
    modules = {
        slot: InputAdapter(w).to(dtype=model.base.dtype) for slot, w in slot_adapters(model.base).items()
    }
    return [
        generate_one(model.base, modules.get(slot), text, p)
        for text, slot, p in zip(texts, slots, params, strict=True)
    ]


def test_naive_equals_the_static_mixed_batch(any_model):
    static = any_model.generate(TEXTS_USED, SLOTS, PARAMS)
    baseline = naive(any_model, TEXTS_USED, SLOTS, PARAMS)
    assert [o.token_ids for o in baseline] == [o.token_ids for o in static]
    assert [(o.text, o.finish_reason, o.seed) for o in baseline] == [
        (o.text, o.finish_reason, o.seed) for o in static
    ]
    # the check has teeth: the rows differ from each other and the adapters change them
    assert len({tuple(o.token_ids) for o in static}) >= 5
    plain = naive(any_model, TEXTS_USED, [0] * len(SLOTS), PARAMS)
    assert sum(a.token_ids != b.token_ids for a, b in zip(plain, baseline, strict=True)) >= 3


def test_continuous_equals_naive_and_static_on_t5(t5_model):
    rows = [i for i, p in enumerate(PARAMS) if p.num_beams == 1]  # beams run on the static path
    batch: ContinuousBatch[int] = ContinuousBatch(t5_model)
    ids = t5_model.encode([TEXTS_USED[i] for i in rows])
    batch.admit(rows, ids, [SLOTS[i] for i in rows], [PARAMS[i] for i in rows])
    done = {}
    while len(batch):
        done.update(batch.step())
    baseline = naive(t5_model, TEXTS_USED, SLOTS, PARAMS)
    static = t5_model.generate(TEXTS_USED, SLOTS, PARAMS)
    for i in rows:
        assert done[i].token_ids == baseline[i].token_ids == static[i].token_ids, i
        assert done[i].finish_reason == baseline[i].finish_reason


@pytest.mark.parametrize("family", ["t5", "gpt2"])
def test_naive_source_layout_is_the_servers(family, t5_model, gpt2_model):
    """GPT-2 sources end with the EOS separator in every path (the baseline used to leave it out)."""
    model = {"t5": t5_model, "gpt2": gpt2_model}[family]
    out = generate_one(model.base, None, "hello world", GenerationParams(max_new_tokens=4))
    assert out.input_tokens == len(model.encode(["hello world"])[0])
