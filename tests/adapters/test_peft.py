"""PEFT prompt-tuning adapters import into the inputtune format with identical behaviour."""

from __future__ import annotations

import json

import pytest
import torch

peft = pytest.importorskip("peft", reason="peft is a dev dependency: pip install -e '.[dev]'")

from adapters import AdaptedModel, AdapterFormatError, import_peft_prompt  # noqa: E402
from tests.conftest import TEXTS, make_model  # noqa: E402


def peft_prompt_model(base_model, task_type, prompt_len=6, seed=3):
    config = peft.PromptTuningConfig(
        task_type=task_type, num_virtual_tokens=prompt_len, num_transformer_submodules=1
    )
    model = peft.get_peft_model(base_model, config)
    with torch.no_grad():
        table = model.prompt_encoder["default"].embedding.weight
        table.copy_(torch.randn(table.shape, generator=torch.Generator().manual_seed(seed)))
    return model


def test_prompt_tuning_matches_peft_logits_t5(tmp_path):
    base = make_model("t5").base  # a fresh base: PEFT wraps the model it is given
    peft_model = peft_prompt_model(base.model, "SEQ_2_SEQ_LM")
    peft_model.save_pretrained(tmp_path / "peft")
    weights = import_peft_prompt(tmp_path / "peft", base_fingerprint=base.fingerprint)
    assert weights.config.kind == "prompt-tuning" and weights.config.prompt_length == 6
    model = AdaptedModel(base, num_slots=1)
    model.load_adapter(1, weights)
    ids = model.encode(TEXTS[:4])
    padded, lengths = model._pad(ids)
    mask = (torch.arange(padded.shape[1])[None] < lengths[:, None]).long()
    dec = torch.tensor([[0, 40, 41, 42, 43]] * 4)
    with torch.no_grad():
        expected = peft_model(input_ids=padded, attention_mask=mask, decoder_input_ids=dec).logits
    ours = model.logits(ids, [1] * 4, decoder_input_ids=dec)
    assert (ours - expected).abs().max().item() <= 1e-5
    plain = model.logits(ids, [0] * 4, decoder_input_ids=dec)
    assert (plain - expected).abs().max().item() > 1e-2  # the prompt matters


def test_prompt_tuning_matches_peft_logits_gpt2(tmp_path):
    base = make_model("gpt2").base
    peft_model = peft_prompt_model(base.model, "CAUSAL_LM", prompt_len=4)
    peft_model.save_pretrained(tmp_path / "peft")
    model = AdaptedModel(base, num_slots=1)
    model.load_adapter(1, import_peft_prompt(tmp_path / "peft", base_fingerprint=base.fingerprint))
    ids = model.encode(["hello there", "a longer input row"])
    ours = model.logits(ids, [1, 1])  # left-padded: (B, 4 + T, V)
    for b, row in enumerate(ids):
        with torch.no_grad():
            expected = peft_model(input_ids=torch.tensor([row])).logits[0]  # (4 + len, V)
        assert (ours[b, -len(expected) :] - expected).abs().max().item() <= 1e-5


def test_import_refuses_other_peft_types(tmp_path):
    folder = tmp_path / "lora"
    folder.mkdir()
    (folder / "adapter_config.json").write_text(json.dumps({"peft_type": "LORA"}))
    (folder / "adapter_model.safetensors").write_bytes(b"")
    with pytest.raises(AdapterFormatError, match="only PROMPT_TUNING"):
        import_peft_prompt(folder)
