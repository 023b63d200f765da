"""The training forward uses exactly the serving layout of AdaptedModel (T5 and GPT-2)."""

from __future__ import annotations

import pytest
import torch

from adapters import AdaptedModel, AdapterConfig, GenerationParams, random_adapter
from adapters.module import InputAdapter
from tests.conftest import TEXTS, make_model
from training.batching import collate, tokenize_examples
from training.common.losses import IGNORE_INDEX
from training.data import Example
from training.forward import TrainModule

SOURCES = TEXTS[:7]
TARGETS = ["olleh", "a short output", "x", "?", "une phrase", "0", "twelve chars"]
PROMPT = 5


pytestmark = pytest.mark.usefixtures("one_thread")  # tests/training/conftest.py


@pytest.fixture(scope="module", params=["t5", "gpt2"])
def served(request):
    """A tiny model with one trained-looking adapter in slot 1, and the same adapter as a training module."""
    model = AdaptedModel(make_model(request.param).base, num_slots=1)
    config = AdapterConfig(
        "input-tuning", model.base.d_model, PROMPT, base_fingerprint=model.base.fingerprint
    )
    weights = random_adapter(config, seed=5, scale=0.3)
    model.load_adapter(1, weights)
    module = TrainModule(model.base.model, model.is_encoder_decoder, InputAdapter(weights))
    return model, module


def _batch(model: AdaptedModel, targets=TARGETS):
    data = tokenize_examples(
        model, [Example(s, t) for s, t in zip(SOURCES, targets, strict=True)], prompt_length=PROMPT
    )
    return data, collate(data, range(len(data)), model.tokenizer.pad_token_id, model.is_encoder_decoder)


def _train_logits(module, batch):
    with torch.no_grad():
        return module(*batch.tensors(), return_logits=True)


def test_training_logits_equal_serving_logits(served):
    model, module = served
    data, batch = _batch(model)
    loss, logits = _train_logits(module, batch)
    if model.is_encoder_decoder:
        decoder_ids = model.base.model.prepare_decoder_input_ids_from_labels(labels=batch.labels)
        serving = model.logits(data.sources, [1] * len(data), decoder_input_ids=decoder_ids)  # (B, Tt, V)
        assert (logits - serving).abs().max().item() <= 1e-5
        reference = torch.nn.functional.cross_entropy(
            serving.flatten(0, 1), batch.labels.flatten(), ignore_index=IGNORE_INDEX, reduction="sum"
        )
        assert abs(loss.item() - reference.item()) <= 1e-3 * reference.item()
        return
    # decoder-only: the prompt + source positions match the serving path (left-padded there) ...
    serving = model.logits(data.sources, [1] * len(data))  # (B, T', V)
    for b, source in enumerate(data.sources):
        n = PROMPT + len(source)
        assert (logits[b, :n] - serving[b, serving.shape[1] - n :]).abs().max().item() <= 1e-5
    # ... and the target positions match the served prefix followed by plain target embeddings,
    # positions counted from each row's first real token (what generation does step by step).
    embeds, mask = model.embed(data.sources, [1] * len(data))
    wte = model.base.model.get_input_embeddings()
    total = 0.0
    for b, target in enumerate(data.targets):
        n = PROMPT + len(data.sources[b])
        row = torch.cat([embeds[b, embeds.shape[1] - n :], wte(torch.tensor(target))])[None]
        with torch.no_grad():
            ref = model.base.model(inputs_embeds=row, position_ids=torch.arange(row.shape[1])[None]).logits[0]
        assert (logits[b, : row.shape[1]] - ref).abs().max().item() <= 1e-5
        total += torch.nn.functional.cross_entropy(
            ref[n - 1 : -1], torch.tensor(target), reduction="sum"
        ).item()
    assert abs(loss.item() - total) <= 1e-4 * total


def test_teacher_forcing_the_served_greedy_output_reproduces_it(served):
    """Train-time argmax over the model's own greedy output = that output: the two paths agree end to end."""
    model, module = served
    outputs = model.generate(
        SOURCES, [1] * len(SOURCES), GenerationParams(max_new_tokens=6, min_new_tokens=6)
    )
    eos = model.tokenizer.eos_token_id
    data, _ = _batch(model)
    data.targets = [o.token_ids + [eos] for o in outputs]  # the exact ids (decode/encode may not round-trip)
    assert all(len(t) == 7 for t in data.targets)
    batch = collate(data, range(len(data)), model.tokenizer.pad_token_id, model.is_encoder_decoder)
    _, logits = _train_logits(module, batch)
    for b, generated in enumerate(outputs):
        if model.is_encoder_decoder:
            predicted = logits[b, :6].argmax(-1)
        else:
            start = PROMPT + len(data.sources[b]) - 1
            predicted = logits[b, start : start + 6].argmax(-1)
        assert predicted.tolist() == generated.token_ids


def test_targets_end_in_one_eos_and_truncation_keeps_it(served):
    model, _ = served
    eos = model.tokenizer.eos_token_id
    data = tokenize_examples(
        model, [Example("abcdefghij" * 3, "klmnopqrst" * 3)], max_source_tokens=8, max_target_tokens=6
    )
    assert len(data.sources[0]) == 8 and data.sources[0][-1] == eos
    assert len(data.targets[0]) == 6 and data.targets[0][-1] == eos and eos not in data.targets[0][:-1]
    assert data.sources[0][:-1] == model.encode(["abcdefghij" * 3])[0][:7]
