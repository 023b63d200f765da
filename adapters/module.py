"""An adapter's weights, their initialisation, and the trainable module.

Shapes: P prompt tokens, D model width, H adapter inner size, B batch, T tokens.

The input adapter is ``x + W2·act(W1·x + b1) + b2`` on each input-token embedding
(An et al. 2022); the soft prompt [P, D] goes in front of the adapted input.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import torch
from torch import nn

from .config import AdapterConfig
from .ops import PaddingSide, mlp_delta, place_prompts

MLP_TENSORS = ("mlp.w1", "mlp.b1", "mlp.w2", "mlp.b2")


def expected_shapes(config: AdapterConfig) -> dict[str, tuple[int, ...]]:
    """Tensor names and shapes an adapter file of this config must hold."""
    d, h = config.d_model, config.hidden_size or 0
    shapes: dict[str, tuple[int, ...]] = {"prompt": (config.prompt_length, d)}
    if config.has_mlp:
        shapes.update({"mlp.w1": (d, h), "mlp.b1": (h,), "mlp.w2": (h, d), "mlp.b2": (d,)})
    return shapes


@dataclass
class AdapterWeights:
    """The tensors of one adapter plus its config: what a file holds and the host tier caches.

    tensors: ``prompt`` (P, D); for input-tuning also ``mlp.w1`` (D, H), ``mlp.b1`` (H,),
    ``mlp.w2`` (H, D), ``mlp.b2`` (D,). ``metadata`` carries free-form strings (training info).
    """

    config: AdapterConfig
    tensors: dict[str, torch.Tensor]
    metadata: dict[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        expected = expected_shapes(self.config)
        assert set(self.tensors) == set(expected), f"tensors {sorted(self.tensors)} != {sorted(expected)}"
        for name, shape in expected.items():
            assert tuple(self.tensors[name].shape) == shape, (
                f"{name}: {tuple(self.tensors[name].shape)} != {shape}"
            )

    @property
    def prompt(self) -> torch.Tensor:
        return self.tensors["prompt"]

    @property
    def nbytes(self) -> int:
        return sum(t.numel() * t.element_size() for t in self.tensors.values())

    def to(
        self, device: torch.device | str | None = None, dtype: torch.dtype | None = None
    ) -> AdapterWeights:
        moved = {k: v.to(device=device, dtype=dtype) for k, v in self.tensors.items()}
        return AdapterWeights(self.config, moved, dict(self.metadata))


def init_adapter(
    config: AdapterConfig, embedding_weight: torch.Tensor, generator: torch.Generator | None = None
) -> AdapterWeights:
    """Fresh adapter as the paper starts it.

    Prompt rows are copies of randomly sampled vocabulary embeddings (Lester et al. 2021);
    W1, b1 use nn.Linear's default init; W2 and b2 are zero, so a fresh adapter is exactly
    the identity on the input embeddings.
    """
    d, h, p = config.d_model, config.hidden_size or 0, config.prompt_length
    vocab = embedding_weight.shape[0]
    assert embedding_weight.shape[1] == d, f"embedding width {embedding_weight.shape[1]} != d_model {d}"
    rows = torch.randint(0, vocab, (p,), generator=generator)
    tensors = {"prompt": embedding_weight.detach().float().cpu()[rows].clone()}
    if config.has_mlp:
        bound = 1.0 / math.sqrt(d)
        tensors["mlp.w1"] = (torch.rand(d, h, generator=generator) * 2 - 1) * bound
        tensors["mlp.b1"] = (torch.rand(h, generator=generator) * 2 - 1) * bound
        tensors["mlp.w2"] = torch.zeros(h, d)
        tensors["mlp.b2"] = torch.zeros(d)
    return AdapterWeights(config, tensors)


def random_adapter(config: AdapterConfig, seed: int, scale: float = 0.02) -> AdapterWeights:
    """A random adapter whose MLP is *not* the identity: for benchmarks and tests of mixing."""
    gen = torch.Generator().manual_seed(seed)
    d, h, p = config.d_model, config.hidden_size or 0, config.prompt_length
    tensors = {"prompt": torch.randn(p, d, generator=gen)}
    if config.has_mlp:
        tensors["mlp.w1"] = torch.randn(d, h, generator=gen) / math.sqrt(d)
        tensors["mlp.b1"] = torch.randn(h, generator=gen) * scale
        tensors["mlp.w2"] = torch.randn(h, d, generator=gen) * scale
        tensors["mlp.b2"] = torch.randn(d, generator=gen) * scale
    return AdapterWeights(config, tensors)


class InputAdapter(nn.Module):
    """One trainable adapter: used by training, and as the plainest reference of the math."""

    def __init__(self, weights: AdapterWeights) -> None:
        super().__init__()
        self.config = weights.config
        self.prompt = nn.Parameter(weights.tensors["prompt"].clone())  # (P, D)
        if self.config.has_mlp:
            self.w1 = nn.Parameter(weights.tensors["mlp.w1"].clone())  # (D, H)
            self.b1 = nn.Parameter(weights.tensors["mlp.b1"].clone())  # (H,)
            self.w2 = nn.Parameter(weights.tensors["mlp.w2"].clone())  # (H, D)
            self.b2 = nn.Parameter(weights.tensors["mlp.b2"].clone())  # (D,)

    def adapt(self, x: torch.Tensor) -> torch.Tensor:
        """x (..., D) -> adapted x (..., D); identity for prompt-tuning."""
        if not self.config.has_mlp:
            return x
        return x + mlp_delta(x, self.w1, self.b1, self.w2, self.b2, self.config.activation)

    def to_weights(self, metadata: dict[str, str] | None = None) -> AdapterWeights:
        tensors = {"prompt": self.prompt.detach().float().cpu().clone()}
        if self.config.has_mlp:
            for name, param in zip(MLP_TENSORS, (self.w1, self.b1, self.w2, self.b2), strict=True):
                tensors[name] = param.detach().float().cpu().clone()
        return AdapterWeights(self.config, tensors, dict(metadata or {}))

    def forward(
        self, embeds: torch.Tensor, input_lengths: torch.Tensor, padding_side: PaddingSide = "right"
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Differentiable single-adapter version of ``apply_adapters``: (B, T, D) right-padded
        embeddings -> ([prompt ; adapted input] (B, P+T, D), attention mask (B, P+T))."""
        batch = embeds.shape[0]
        prompts = self.prompt.to(embeds.dtype).unsqueeze(0).expand(batch, -1, -1)  # (B, P, D)
        lengths = torch.full((batch,), self.config.prompt_length, dtype=torch.long, device=embeds.device)
        return place_prompts(self.adapt(embeds), input_lengths, prompts, lengths, padding_side)
