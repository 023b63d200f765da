"""The adapted model: the golden mixed-batch property, identity, frozen base, sampling."""

from __future__ import annotations

import pytest
import torch

from adapters import AdaptedModel, AdapterConfig, GenerationParams, InputTooLongError, init_adapter
from adapters.module import InputAdapter
from tests.conftest import TEXTS

SLOTS = [1, 2, 3, 0, 1, 2, 3, 0, 1, 2, 3, 0, 2, 1]  # 14 rows: 3 adapters + no adapter


def one_by_one(model: AdaptedModel, texts, slots, params):
    return [model.generate([t], [s], params)[0] for t, s in zip(texts, slots, strict=True)]


@pytest.mark.parametrize("num_beams", [1, 3])
def test_mixed_batch_equals_each_row_alone(any_model, num_beams):
    params = GenerationParams(max_new_tokens=8, num_beams=num_beams)
    batch = any_model.generate(TEXTS, SLOTS, params)
    alone = one_by_one(any_model, TEXTS, SLOTS, params)
    assert [o.token_ids for o in batch] == [o.token_ids for o in alone]
    assert [o.finish_reason for o in batch] == [o.finish_reason for o in alone]
    # the check has teeth: adapters change outputs, and outputs vary across rows
    base_only = any_model.generate(TEXTS, [0] * len(TEXTS), params)
    changed = sum(b.token_ids != o.token_ids for b, o in zip(batch, base_only, strict=True))
    assert changed >= 6
    assert len({tuple(o.token_ids) for o in batch}) >= 8


def test_fast_and_reference_paths_give_the_same_outputs(t5_model):
    params = GenerationParams(max_new_tokens=6)
    fast = t5_model.generate(TEXTS, SLOTS, params, path="fast")
    ref = t5_model.generate(TEXTS, SLOTS, params, path="reference")
    assert [o.token_ids for o in fast] == [o.token_ids for o in ref]


def test_per_row_parameters_in_one_batch(any_model):
    rows = [
        GenerationParams(max_new_tokens=3),
        GenerationParams(max_new_tokens=9, repetition_penalty=1.8),
        GenerationParams(max_new_tokens=7, do_sample=True, temperature=30.0, top_k=20, seed=11),
        GenerationParams(max_new_tokens=5, do_sample=True, temperature=30.0, top_p=0.7, seed=12),
        GenerationParams(max_new_tokens=6, num_beams=2),
        GenerationParams(max_new_tokens=6, min_new_tokens=6),
    ]
    texts, slots = TEXTS[: len(rows)], [1, 2, 3, 0, 1, 2]
    batch = any_model.generate(texts, slots, rows)
    alone = [any_model.generate([t], [s], p)[0] for t, s, p in zip(texts, slots, rows, strict=True)]
    assert [o.token_ids for o in batch] == [o.token_ids for o in alone]
    assert batch[0].generated_tokens <= 3
    assert batch[5].generated_tokens == 6
    for out, p in zip(batch, rows, strict=True):
        assert out.generated_tokens <= p.max_new_tokens
        assert out.finish_reason in ("eos", "length")


def test_seeded_sampling_is_reproducible_and_seed_dependent(t5_model):
    p = GenerationParams(max_new_tokens=10, do_sample=True, temperature=50.0, seed=7)
    first = t5_model.generate(TEXTS[:4], [1, 2, 3, 0], p)
    again = t5_model.generate(TEXTS[:4], [1, 2, 3, 0], p)
    other = t5_model.generate(TEXTS[:4], [1, 2, 3, 0], GenerationParams(**{**p.__dict__, "seed": 8}))
    assert [o.token_ids for o in first] == [o.token_ids for o in again]
    assert [o.token_ids for o in first] != [o.token_ids for o in other]
    assert first[0].seed == 7
    greedy = t5_model.generate(TEXTS[:4], [1, 2, 3, 0], GenerationParams(max_new_tokens=10))
    assert [o.token_ids for o in first] != [o.token_ids for o in greedy]
    # a top_k at least the vocabulary keeps every token: the same draws as no top_k at all
    huge_k = t5_model.generate(
        TEXTS[:4], [1, 2, 3, 0], GenerationParams(**{**p.__dict__, "top_k": 2**31 - 1})
    )
    assert [o.token_ids for o in huge_k] == [o.token_ids for o in first]


def test_fresh_adapter_with_no_prompt_gives_base_logits(any_model):
    base = any_model.base
    config = AdapterConfig("input-tuning", base.d_model, prompt_length=0, base_fingerprint=base.fingerprint)
    weights = init_adapter(config, base.model.get_input_embeddings().weight, torch.Generator().manual_seed(0))
    model = AdaptedModel(base, num_slots=1)
    model.load_adapter(1, weights)
    ids = model.encode(TEXTS[:3])
    dec = torch.tensor([[0, 5, 9, 12]] * 3)
    kwargs = {"decoder_input_ids": dec} if model.is_encoder_decoder else {}
    with_adapter = model.logits(ids, [1, 1, 1], **kwargs)
    plain = model.logits(ids, [0, 0, 0], **kwargs)
    assert torch.equal(with_adapter, plain)
    # and the plain path is the base model itself
    padded = torch.zeros(3, max(map(len, ids)), dtype=torch.long)
    mask = torch.zeros_like(padded)
    for b, row in enumerate(ids):
        if model.is_encoder_decoder:
            padded[b, : len(row)], mask[b, : len(row)] = torch.tensor(row), 1
        else:
            padded[b, padded.shape[1] - len(row) :], mask[b, padded.shape[1] - len(row) :] = (
                torch.tensor(row),
                1,
            )
    with torch.no_grad():
        if model.is_encoder_decoder:
            direct = base.model(input_ids=padded, attention_mask=mask, decoder_input_ids=dec).logits
        else:
            pos = (mask.cumsum(-1) - 1).clamp(min=0)
            direct = base.model(input_ids=padded, attention_mask=mask, position_ids=pos).logits
    valid = mask.bool() if not model.is_encoder_decoder else slice(None)
    assert (plain[valid] - direct[valid]).abs().max().item() <= 1e-5


def test_base_weights_stay_frozen_through_forward_and_backward(t5_model):
    base = t5_model.base
    before = {k: v.clone() for k, v in base.model.state_dict().items()}
    config = AdapterConfig("input-tuning", base.d_model, prompt_length=4)
    module = InputAdapter(init_adapter(config, base.model.get_input_embeddings().weight))
    optimizer = torch.optim.SGD(module.parameters(), lr=0.5)
    ids, lengths = t5_model._pad(t5_model.encode(TEXTS[:4]))
    labels = torch.tensor([[5, 6, 7, 1]] * 4)
    for _ in range(3):
        embeds, mask = module(base.model.get_input_embeddings()(ids), lengths)
        loss = base.model(inputs_embeds=embeds, attention_mask=mask, labels=labels).loss
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    assert module.prompt.grad is not None and module.w1.grad is not None
    assert all(p.grad is None and not p.requires_grad for p in base.model.parameters())
    after = base.model.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)


def test_gpt2_refuses_inputs_past_its_positions(gpt2_model):
    too_long = "x" * 600  # byte tokenizer: 600 tokens > 512 positions
    with pytest.raises(InputTooLongError, match="512"):
        gpt2_model.generate([too_long], [0], GenerationParams(max_new_tokens=4))


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"max_new_tokens": 0}, "max_new_tokens must be >= 1"),
        ({"temperature": 0.0}, "temperature must be > 0"),
        ({"top_p": 1.5}, "top_p"),
        ({"do_sample": True, "num_beams": 2}, "cannot be combined"),
        ({"min_new_tokens": 5, "max_new_tokens": 2}, "min_new_tokens"),
        ({"top_k": 2**63}, "top_k must be in"),
    ],
)
def test_generation_params_are_validated(kwargs, message):
    with pytest.raises(ValueError, match=message):
        GenerationParams(**kwargs)


def test_unloaded_slot_is_refused(t5_model):
    empty = AdaptedModel(t5_model.base, num_slots=2)
    with pytest.raises(ValueError, match="slot 2 holds no adapter"):
        empty.generate(["hi"], [2])


def test_ids_past_the_tokenizer_are_left_out_of_the_text(t5_model):
    from adapters.text import decode_text

    tok = t5_model.tokenizer
    hello = tok("hi", add_special_tokens=False)["input_ids"]
    assert decode_text(tok, [*hello, len(tok) + 5, 32127]) == "hi"


def test_long_gpt2_row_beside_a_longer_generation_stays_inside_its_positions(gpt2_model):
    rows = ["y" * 490, "short"]  # 491 tokens + 6 new fits 512; the neighbour's 20 new would not
    params = [GenerationParams(max_new_tokens=6), GenerationParams(max_new_tokens=20)]
    batch = gpt2_model.generate(rows, [1, 1], params)
    alone = [gpt2_model.generate([r], [1], p)[0] for r, p in zip(rows, params, strict=True)]
    assert [o.token_ids for o in batch] == [o.token_ids for o in alone]
