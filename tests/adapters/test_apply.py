"""Batched adapter application: fast path == reference path, exact layout, identity init."""

from __future__ import annotations

import pytest
import torch

from adapters import AdapterBank, AdapterConfig, apply_adapters, init_adapter, random_adapter
from adapters.module import InputAdapter
from adapters.ops import place_prompts, place_prompts_reference

D = 16


def filled_bank() -> AdapterBank:
    bank = AdapterBank(num_slots=5, d_model=D, device="cpu", dtype=torch.float32)
    configs = [
        AdapterConfig("input-tuning", D, prompt_length=4),
        AdapterConfig("prompt-tuning", D, prompt_length=2),
        AdapterConfig("input-tuning", D, prompt_length=0, hidden_size=5, activation="tanh"),
        AdapterConfig("input-tuning", D, prompt_length=7, hidden_size=40, activation="silu"),
    ]
    for slot, config in enumerate(configs, start=1):
        bank.load(slot, random_adapter(config, seed=slot, scale=0.3))
    return bank


@pytest.mark.parametrize("side", ["right", "left"])
def test_fast_path_equals_reference(side):
    bank = filled_bank()
    gen = torch.Generator().manual_seed(0)
    lengths = torch.tensor([3, 9, 1, 6, 9, 2, 5, 4, 7, 8, 1, 3])
    slots = torch.tensor([0, 1, 2, 3, 4, 1, 0, 4, 3, 2, 1, 4])
    embeds = torch.randn(len(lengths), 9, D, generator=gen)
    fast, fast_mask = apply_adapters(embeds, lengths, slots, bank, padding_side=side, path="fast")
    ref, ref_mask = apply_adapters(embeds, lengths, slots, bank, padding_side=side, path="reference")
    assert fast.shape == ref.shape == (12, 9 + 7, D)
    assert torch.equal(fast_mask, ref_mask)
    assert (fast - ref).abs().max().item() <= 1e-6
    # the MLPs really changed the input-tuning rows, and left prompt-tuning/no-adapter rows untouched
    input_rows = fast[1, 4:13] if side == "right" else fast[1, -9:]
    assert not torch.allclose(input_rows, embeds[1])


def test_layout_each_row_is_its_prompt_then_its_input():
    bank = filled_bank()
    lengths = torch.tensor([2, 5, 3])
    slots = torch.tensor([1, 2, 0])
    embeds = torch.randn(3, 5, D)
    out, mask = apply_adapters(embeds, lengths, slots, bank, padding_side="right")
    assert mask.tolist() == [[1] * 6 + [0] * 1, [1] * 7, [1] * 3 + [0] * 4]
    assert torch.equal(out[1, :2], bank.slot_prompt(2))  # prompt-tuning: prompt then raw input
    assert torch.equal(out[1, 2:7], embeds[1])
    assert torch.equal(out[2, :3], embeds[2, :3])  # slot 0: input alone
    assert torch.count_nonzero(out[2, 3:]) == 0  # padding is zeros
    left, left_mask = apply_adapters(embeds, lengths, slots, bank, padding_side="left")
    assert left_mask.tolist() == [[0] + [1] * 6, [1] * 7, [0] * 4 + [1] * 3]
    assert torch.equal(left[2, 4:], embeds[2, :3])


def test_place_prompts_matches_row_by_row_reference():
    gen = torch.Generator().manual_seed(1)
    inputs = torch.randn(4, 6, D, generator=gen)
    lengths = torch.tensor([6, 1, 4, 2])
    prompt_lengths = torch.tensor([0, 3, 1, 5])
    prompts = torch.randn(4, 5, D, generator=gen)
    for side in ("right", "left"):
        fast, fmask = place_prompts(inputs, lengths, prompts, prompt_lengths, side)
        ref, rmask = place_prompts_reference(
            inputs, lengths, [prompts[b, : prompt_lengths[b]] for b in range(4)], side
        )
        assert torch.equal(fast, ref) and torch.equal(fmask, rmask)


def test_fresh_adapter_is_identity_and_zero_padding_is_exact():
    config = AdapterConfig("input-tuning", D, prompt_length=0, hidden_size=13)  # 13 pads to 16 in the bank
    weights = init_adapter(config, torch.randn(50, D), torch.Generator().manual_seed(0))
    assert torch.count_nonzero(weights.tensors["mlp.w2"]) == 0
    bank = AdapterBank(num_slots=1, d_model=D, device="cpu", dtype=torch.float32)
    bank.load(1, weights)
    assert bank.hidden_capacity == 16
    embeds = torch.randn(2, 4, D)
    out, mask = apply_adapters(embeds, torch.tensor([4, 2]), torch.tensor([1, 1]), bank)
    assert torch.equal(out[0], embeds[0]) and torch.equal(out[1, :2], embeds[1, :2])


def test_prompt_rows_come_from_the_vocabulary():
    table = torch.randn(30, D)
    weights = init_adapter(
        AdapterConfig("prompt-tuning", D, prompt_length=6), table, torch.Generator().manual_seed(3)
    )
    for row in weights.prompt:
        assert any(torch.equal(row, vocab_row) for vocab_row in table)


def test_training_module_matches_bank_path():
    config = AdapterConfig("input-tuning", D, prompt_length=3, hidden_size=8)
    weights = random_adapter(config, seed=5, scale=0.4)
    module = InputAdapter(weights)
    bank = AdapterBank(num_slots=1, d_model=D, device="cpu", dtype=torch.float32)
    bank.load(1, weights)
    embeds, lengths = torch.randn(3, 5, D), torch.tensor([5, 2, 4])
    a, amask = module(embeds, lengths)
    b, bmask = apply_adapters(embeds, lengths, torch.tensor([1, 1, 1]), bank)
    assert torch.equal(amask, bmask)
    assert (a - b).abs().max().item() <= 1e-6


def test_bank_grows_and_keeps_earlier_slots():
    bank = AdapterBank(num_slots=2, d_model=D, device="cpu", dtype=torch.float32)
    small = random_adapter(AdapterConfig("input-tuning", D, prompt_length=2, hidden_size=8), seed=1)
    bank.load(1, small)
    before = bank.slot_mlp(1)[0].clone()
    bank.load(2, random_adapter(AdapterConfig("input-tuning", D, prompt_length=9, hidden_size=33), seed=2))
    assert bank.prompt_capacity == 9 and bank.hidden_capacity == 40
    assert torch.equal(bank.slot_mlp(1)[0], before)
    assert torch.equal(bank.slot_prompt(1), small.prompt)
    bank.clear(1)
    assert bank.configs[1] is None and bank.slot_mlp(1) is None and bank.slot_prompt(1).shape[0] == 0
