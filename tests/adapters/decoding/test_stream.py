"""What streaming adds to the per-row policy: incremental text, stop sequences, logprobs, dropping
rows. Every path (continuous, static) must give the same tokens and the same text, streamed or not."""

from __future__ import annotations

import random

import pytest

from adapters import GenerationParams, decode_text
from adapters.decoding import ContinuousBatch
from adapters.decoding.sampling import RowDecoding
from adapters.text import IncrementalDecoder
from server.demo import DEMO_DIR
from tests.conftest import TEXTS


def tokenizers(t5_model, gpt2_model):
    found = {"byt5": t5_model.tokenizer, "gpt2-bytes": gpt2_model.tokenizer}
    if (DEMO_DIR / "base" / "tokenizer.json").is_file():
        from transformers import AutoTokenizer

        found["demo-bpe"] = AutoTokenizer.from_pretrained(str(DEMO_DIR / "base"))
    return found


def test_pieces_concatenate_to_the_decoded_text(t5_model, gpt2_model):
    rng = random.Random(0)
    texts = TEXTS + ["naïve café — 東京 😀 ß", "Ünïcödé ★ 12,3 €", "   spaced   out  "]
    for name, tok in tokenizers(t5_model, gpt2_model).items():
        vocab = len(tok)
        cases = [tok(t, add_special_tokens=False)["input_ids"] for t in texts]
        cases += [[rng.randrange(vocab + 5) for _ in range(rng.randint(1, 40))] for _ in range(200)]
        for ids in cases:
            decoder = IncrementalDecoder(tok)
            pieces = [decoder.add(t) for t in ids] + [decoder.finish()]
            assert "".join(pieces) == decode_text(tok, ids), (name, ids)
        multibyte = tok("😀", add_special_tokens=False)["input_ids"]
        if len(multibyte) > 1:  # the character arrives whole, never in parts
            decoder = IncrementalDecoder(tok)
            assert "😀" in [decoder.add(t) for t in multibyte] + [decoder.finish()], name


def run_continuous(model, texts, slots, params, stream=False, joins=None):
    """Continuous batching; returns (outputs, events per row)."""
    batch: ContinuousBatch[int] = ContinuousBatch(model)
    ids = model.encode(texts)
    rows = [RowDecoding.start(p, model.tokenizer, stream=stream) for p in params]
    joins = joins or {0: list(range(len(texts)))}
    outputs, events, step = {}, {i: [] for i in range(len(texts))}, 0
    while len(outputs) < len(texts):
        if step in joins:
            js = joins[step]
            batch.admit(
                js,
                [ids[i] for i in js],
                [slots[i] for i in js],
                [params[i] for i in js],
                [rows[i] for i in js],
            )
        outputs.update(batch.step())
        for i, row in enumerate(rows):
            events[i] += row.take_events() if stream else []
        step += 1
    return [outputs[i] for i in range(len(texts))], events


PARAMS = [
    GenerationParams(max_new_tokens=12),
    GenerationParams(max_new_tokens=12, do_sample=True, temperature=30.0, seed=4),
    GenerationParams(max_new_tokens=10, repetition_penalty=1.5, logprobs=3),
    GenerationParams(max_new_tokens=12, logprobs=0, min_new_tokens=4),
]


def test_stop_sequences_end_the_row_where_the_text_first_holds_one(t5_model):
    slots = [1, 2, 3, 0]
    texts = TEXTS[:4]
    plain = t5_model.generate(texts, slots, PARAMS)
    stopped_params, cuts = [], []
    for p, out in zip(PARAMS, plain, strict=True):
        stop = out.text[1:2] if len(out.text) >= 2 else "\x00never"  # a piece of the text it will write
        stopped_params.append(GenerationParams(**{**p.__dict__, "stop": (stop, "\x01never")}))
        cuts.append(out.text.find(stop) if stop in out.text else None)
    assert sum(c is not None for c in cuts) >= 2, "the random model wrote too little to test stops"
    static = t5_model.generate(texts, slots, stopped_params)
    continuous, _ = run_continuous(t5_model, texts, slots, stopped_params)
    for i, (out, cut) in enumerate(zip(static, cuts, strict=True)):
        assert out.token_ids == continuous[i].token_ids and out.text == continuous[i].text, i
        if cut is None:
            assert (out.text, out.finish_reason) == (plain[i].text, plain[i].finish_reason)
            continue
        assert out.finish_reason == "stop" and out.text == plain[i].text[:cut]
        # the row ended at the token that completed the stop sequence: the same first tokens
        assert out.token_ids == plain[i].token_ids[: len(out.token_ids)]
        assert stopped_params[i].stop[0] in decode_text(t5_model.tokenizer, out.token_ids)
        assert stopped_params[i].stop[0] not in decode_text(t5_model.tokenizer, out.token_ids[:-1])


@pytest.mark.parametrize("with_stops", [False, True])
def test_streamed_rows_equal_unstreamed_rows(t5_model, with_stops):
    slots = [1, 2, 3, 0]
    params = [GenerationParams(**{**p.__dict__, "stop": ("e", "zz") if with_stops else ()}) for p in PARAMS]
    quiet, _ = run_continuous(t5_model, TEXTS[:4], slots, params)
    loud, events = run_continuous(
        t5_model, TEXTS[:4], slots, params, stream=True, joins={0: [0, 1], 3: [2, 3]}
    )
    static_rows = [RowDecoding.start(p, t5_model.tokenizer, stream=True) for p in params]
    static = t5_model.generate(TEXTS[:4], slots, params, decodings=static_rows)
    for i in range(4):
        assert loud[i].token_ids == quiet[i].token_ids == static[i].token_ids
        assert loud[i].text == quiet[i].text == static[i].text
        assert "".join(e.text for e in events[i]) == loud[i].text
        assert "".join(e.text for e in static_rows[i].take_events()) == static[i].text
        ids = [e.id for e in events[i] if not (e.special and e.id == t5_model.tokenizer.eos_token_id)]
        assert ids == loud[i].token_ids
        assert len(events[i]) == loud[i].generated_tokens + (loud[i].finish_reason == "eos")


def test_logprobs_agree_between_paths_and_describe_the_choice(t5_model):
    slots = [1, 2, 3, 0]
    continuous, _ = run_continuous(t5_model, TEXTS[:4], slots, PARAMS)
    static = t5_model.generate(TEXTS[:4], slots, PARAMS)
    for i, p in enumerate(PARAMS):
        if p.logprobs is None:
            assert continuous[i].logprobs is None and static[i].logprobs is None
            continue
        got, ref = continuous[i].logprobs, static[i].logprobs
        assert got is not None and ref is not None and len(got) == len(ref) == continuous[i].generated_tokens
        for a, b in zip(got, ref, strict=True):
            assert a.logprob == pytest.approx(b.logprob, abs=1e-4) and a.logprob <= 0
            assert [t for t, _ in a.top] == [t for t, _ in b.top] and len(a.top) == p.logprobs
        if p.logprobs:  # greedy: the chosen token is the most likely one
            assert [lp.top[0][0] for lp in got] == continuous[i].token_ids
            assert all(lp.logprob == pytest.approx(lp.top[0][1]) for lp in got)


def test_dropped_rows_leave_and_the_others_are_unaffected(t5_model):
    params = GenerationParams(max_new_tokens=10, min_new_tokens=10)
    texts, slots = TEXTS[:5], [1, 2, 3, 0, 1]
    batch: ContinuousBatch[int] = ContinuousBatch(t5_model)
    batch.admit(list(range(5)), t5_model.encode(texts), slots, [params] * 5)
    done = dict(batch.step())
    batch.drop({1, 3})
    assert [r.key for r in batch.rows] == [0, 2, 4]
    while len(batch):
        done.update(batch.step())
    assert sorted(done) == [0, 2, 4]
    alone = t5_model.generate([texts[i] for i in (0, 2, 4)], [slots[i] for i in (0, 2, 4)], params)
    assert [done[i].token_ids for i in (0, 2, 4)] == [o.token_ids for o in alone]
    assert (batch.cache.rows, batch.cache.t, batch.cache.start) == (0, 0, 0)  # an empty batch starts afresh


def test_beams_refuse_logprobs_and_stops():
    with pytest.raises(ValueError, match="beam search"):
        GenerationParams(num_beams=2, logprobs=1)
    with pytest.raises(ValueError, match="beam search"):
        GenerationParams(num_beams=2, stop=("x",))
