"""Shared fixtures: tiny random bases built from configs (no downloads) and adapter sets."""

from __future__ import annotations

import pytest
import torch

from adapters import AdaptedModel, AdapterConfig, AdapterWeights, random_adapter
from adapters.testing import build_random_base

# A sharper random init than T5's default, so greedy outputs vary with the input and the
# adapter instead of collapsing to one token: the golden tests then have something to check.
INIT_SCALE = 8.0

TEXTS = [
    "hello world",
    "name[The Eagle], eatType[coffee shop], food[French], priceRange[£20-25]",
    "a",
    "translate this sentence into something else entirely please",
    "x y z",
    "Les enfants jouent dans le parc.",
    "<H> Alan Bean <R> occupation <T> astronaut",
    "0123456789",
    "ein Mann fährt Fahrrad",
    "short",
    "the quick brown fox jumps over the lazy dog",
    "é£[]",
    "one more row of medium length here",
    "?",
]


def adapter_configs(d_model: int) -> list[AdapterConfig]:
    """Three adapters of both kinds with different prompt lengths, inner sizes and activations."""
    return [
        AdapterConfig("input-tuning", d_model, prompt_length=5),
        AdapterConfig("prompt-tuning", d_model, prompt_length=3),
        AdapterConfig("input-tuning", d_model, prompt_length=0, hidden_size=24, activation="gelu"),
    ]


def slot_adapters(base) -> dict[int, AdapterWeights]:
    """The adapters ``make_model`` puts in slots 1..3 (random, with the base's fingerprint)."""
    return {
        slot: random_adapter(config.replace(base_fingerprint=base.fingerprint), seed=slot, scale=0.5)
        for slot, config in enumerate(adapter_configs(base.d_model), start=1)
    }


def make_model(family: str, num_slots: int = 4, seed: int = 0) -> AdaptedModel:
    base = build_random_base(family, "tiny", seed=seed, init_scale=INIT_SCALE)
    model = AdaptedModel(base, num_slots=num_slots)
    for slot, weights in slot_adapters(base).items():
        model.load_adapter(slot, weights)
    return model


@pytest.fixture(scope="session")
def t5_model() -> AdaptedModel:
    return make_model("t5")


@pytest.fixture(scope="session")
def gpt2_model() -> AdaptedModel:
    return make_model("gpt2")


@pytest.fixture(params=["t5", "gpt2"])
def any_model(request, t5_model, gpt2_model) -> AdaptedModel:
    return {"t5": t5_model, "gpt2": gpt2_model}[request.param]


@pytest.fixture(autouse=True)
def _deterministic():
    torch.manual_seed(0)
