"""The adapter bank: loaded adapters stacked in device-resident slots.

Shapes: S slots (slot 0 = no adapter), Pc prompt capacity, Hc inner-size capacity, D width.

Every slot holds the same padded shapes so a batch of rows with different adapters
can index them in one operation. Shorter prompts and smaller MLPs are zero-padded:
zero columns of W1/b1 give act(0) = 0, which meets zero rows of W2, so padding is exact.
"""

from __future__ import annotations

import torch

from .config import ACTIVATIONS, AdapterConfig
from .errors import AdapterCapacityError, IncompatibleAdapterError
from .module import AdapterWeights

NO_ADAPTER = 0


def _round_up(value: int, multiple: int) -> int:
    return -(-value // multiple) * multiple


class AdapterBank:
    """Fixed number of adapter slots on one device.

    ``num_slots`` usable slots are numbered 1..num_slots; slot 0 is the plain base model.
    Loading into a slot overwrites it; the caller (the server's cache) decides which slot.
    """

    def __init__(self, num_slots: int, d_model: int, device: torch.device | str, dtype: torch.dtype) -> None:
        if num_slots < 1:
            raise ValueError(f"num_slots must be >= 1, got {num_slots}")
        self.d_model = d_model
        self.device = torch.device(device)
        self.dtype = dtype
        size = num_slots + 1
        self.prompts = torch.zeros(size, 0, d_model, device=self.device, dtype=dtype)  # (S, Pc, D)
        self.prompt_lengths = torch.zeros(size, dtype=torch.long, device=self.device)  # (S,)
        self.w1 = torch.zeros(size, d_model, 0, device=self.device, dtype=dtype)  # (S, D, Hc)
        self.b1 = torch.zeros(size, 0, device=self.device, dtype=dtype)  # (S, Hc)
        self.w2 = torch.zeros(size, 0, d_model, device=self.device, dtype=dtype)  # (S, Hc, D)
        self.b2 = torch.zeros(size, d_model, device=self.device, dtype=dtype)  # (S, D)
        self.has_mlp = torch.zeros(size, dtype=torch.bool, device=self.device)  # (S,)
        self.activation_ids = torch.zeros(size, dtype=torch.long, device=self.device)  # (S,)
        self.configs: list[AdapterConfig | None] = [None] * size
        # Host copies of small per-slot facts, so hot paths need not sync with the device.
        self.host_prompt_lengths = [0] * size
        self.host_has_mlp = [False] * size

    @property
    def num_slots(self) -> int:
        return len(self.configs) - 1

    @property
    def prompt_capacity(self) -> int:
        return self.prompts.shape[1]

    @property
    def hidden_capacity(self) -> int:
        return self.w1.shape[2]

    def _grow(self, prompt_length: int, hidden_size: int) -> None:
        """Reallocate with more prompt rows or inner width; existing slots are kept exactly."""
        pc = max(self.prompt_capacity, prompt_length)
        hc = max(self.hidden_capacity, _round_up(hidden_size, 8))  # aligned rows for grouped matmuls
        if pc > self.prompt_capacity:
            grown = self.prompts.new_zeros(self.prompts.shape[0], pc, self.d_model)
            grown[:, : self.prompt_capacity] = self.prompts
            self.prompts = grown
        if hc > self.hidden_capacity:
            old = self.hidden_capacity
            w1 = self.w1.new_zeros(self.w1.shape[0], self.d_model, hc)
            w1[:, :, :old] = self.w1
            b1 = self.b1.new_zeros(self.b1.shape[0], hc)
            b1[:, :old] = self.b1
            w2 = self.w2.new_zeros(self.w2.shape[0], hc, self.d_model)
            w2[:, :old] = self.w2
            self.w1, self.b1, self.w2 = w1, b1, w2

    def _check_slot(self, slot: int) -> None:
        if not 1 <= slot <= self.num_slots:
            raise AdapterCapacityError(f"slot {slot} is outside 1..{self.num_slots}")

    def load(self, slot: int, weights: AdapterWeights) -> None:
        """Copy an adapter into a slot (host -> device), replacing what was there."""
        self._check_slot(slot)
        config = weights.config
        if config.d_model != self.d_model:
            raise IncompatibleAdapterError(
                f"adapter has d_model={config.d_model} but the base model has d_model={self.d_model}: "
                "retrain it on this base or load the base it was made for"
            )
        self._grow(config.prompt_length, config.hidden_size or 0)
        p = config.prompt_length
        self.prompts[slot].zero_()
        self.prompts[slot, :p] = weights.tensors["prompt"].to(device=self.device, dtype=self.dtype)
        self.prompt_lengths[slot] = p
        self.w1[slot].zero_()
        self.b1[slot].zero_()
        self.w2[slot].zero_()
        self.b2[slot].zero_()
        if config.has_mlp:
            h = config.hidden_size or 0
            self.w1[slot, :, :h] = weights.tensors["mlp.w1"].to(device=self.device, dtype=self.dtype)
            self.b1[slot, :h] = weights.tensors["mlp.b1"].to(device=self.device, dtype=self.dtype)
            self.w2[slot, :h] = weights.tensors["mlp.w2"].to(device=self.device, dtype=self.dtype)
            self.b2[slot] = weights.tensors["mlp.b2"].to(device=self.device, dtype=self.dtype)
        self.has_mlp[slot] = config.has_mlp
        self.activation_ids[slot] = ACTIVATIONS.index(config.activation)
        self.configs[slot] = config
        self.host_prompt_lengths[slot] = p
        self.host_has_mlp[slot] = config.has_mlp

    def clear(self, slot: int) -> None:
        """Empty a slot; using it afterwards is the plain base model."""
        self._check_slot(slot)
        for tensor in (self.prompts, self.w1, self.b1, self.w2, self.b2):
            tensor[slot].zero_()
        self.prompt_lengths[slot] = 0
        self.has_mlp[slot] = False
        self.configs[slot] = None
        self.host_prompt_lengths[slot] = 0
        self.host_has_mlp[slot] = False

    def slot_mlp(
        self, slot: int
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor, str] | None:
        """The slot's MLP trimmed to its own inner size (the reference path uses it), or None."""
        config = self.configs[slot]
        if config is None or not config.has_mlp:
            return None
        h = config.hidden_size or 0
        return self.w1[slot, :, :h], self.b1[slot, :h], self.w2[slot, :h], self.b2[slot], config.activation

    def slot_prompt(self, slot: int) -> torch.Tensor:
        """The slot's prompt (P, D), trimmed to its own length."""
        return self.prompts[slot, : self.host_prompt_lengths[slot]]
