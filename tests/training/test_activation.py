"""The adapter's per-token change ‖W2·act(W1·x + b1) + b2‖ / ‖x‖ on an MLP set by hand, against
values worked out on paper."""

from __future__ import annotations

import math

import pytest
import torch

from adapters import AdapterConfig, AdapterWeights, InvalidParametersError
from training.activation import relative_change


def hand_adapter(d: int = 2, activation: str = "relu") -> AdapterWeights:
    """W1 = I, b1 = 0, W2 = 2·I, b2 = 0: Δ(x) = 2·act(x)."""
    config = AdapterConfig("input-tuning", d, prompt_length=1, hidden_size=d, activation=activation)
    tensors = {
        "prompt": torch.zeros(1, d),
        "mlp.w1": torch.eye(d),
        "mlp.b1": torch.zeros(d),
        "mlp.w2": 2 * torch.eye(d),
        "mlp.b2": torch.zeros(d),
    }
    return AdapterWeights(config, tensors)


def test_relative_change_matches_hand_values():
    x = torch.tensor([[3.0, 4.0], [-3.0, 4.0], [-1.0, -1.0]])
    # relu: (3,4) -> Δ=(6,8), 10/5; (-3,4) -> Δ=(0,8), 8/5; (-1,-1) -> Δ=0
    assert relative_change(x, hand_adapter()).tolist() == pytest.approx([2.0, 1.6, 0.0])


def test_bias_and_tanh():
    weights = hand_adapter(activation="tanh")
    weights.tensors["mlp.b2"] = torch.tensor([1.0, 0.0])
    x = torch.tensor([[1.0, 0.0]])
    expected = abs(2 * math.tanh(1.0) + 1.0) / 1.0
    assert relative_change(x, weights).tolist() == pytest.approx([expected])


def test_prompt_tuning_adapter_has_no_change():
    config = AdapterConfig("prompt-tuning", 2, prompt_length=1)
    with pytest.raises(InvalidParametersError, match="prompt-tuning adapter: it has no input MLP"):
        relative_change(torch.ones(1, 2), AdapterWeights(config, {"prompt": torch.zeros(1, 2)}))
