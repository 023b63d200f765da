"""Training smoke tests: each method learns a toy task, the base stays bit-identical, the output serves."""

from __future__ import annotations

import json
import random
from pathlib import Path

import pytest
import torch

from adapters import AdaptedModel, BaseModel, GenerationParams, load_adapter
from adapters.testing import build_random_base
from tests.conftest import INIT_SCALE
from training.common.device import make_accelerator
from training.config import AdapterTrainConfig
from training.data import EvalItem, Example
from training.output import FINE_TUNED_METADATA
from training.trainer import Trainer, TrainResult

PROBES = ["abcd", "hgfe", "aaab", "cafe", "bead"]


pytestmark = pytest.mark.usefixtures("one_thread")  # tests/training/conftest.py


def reverse_task(n: int, seed: int = 0) -> list[Example]:
    """Reverse strings of 3-8 letters from a small alphabet: learnable, tokenizer-agnostic."""
    rng = random.Random(seed)
    words = ["".join(rng.choice("abcdefgh") for _ in range(rng.randint(3, 8))) for _ in range(n)]
    return [Example(w, w[::-1]) for w in words]


def dev_items(n: int = 6, seed: int = 1) -> list[EvalItem]:
    return [EvalItem(e.source, (e.target,)) for e in reverse_task(n, seed)]


def write_jsonl(path: Path, examples: list[Example]) -> Path:
    path.write_text("".join(json.dumps({"source": e.source, "target": e.target}) + "\n" for e in examples))
    return path


def run_training(
    tmp_path: Path, base: BaseModel, method: str = "input-tuning", dev=None, **overrides
) -> tuple[TrainResult, Trainer]:
    out = tmp_path / ("model" if method == "fine-tuning" else "adapter.safetensors")
    settings = dict(
        model=base.name,
        out=str(out),
        method=method,
        max_steps=40,
        batch_size=8,
        prompt_length=4,
        log_every=1,
        progress=False,
        device="cpu",
        max_new_tokens=8,
        warmup_steps=2,
    )
    settings.update(overrides)
    trainer = Trainer(
        AdapterTrainConfig(**settings),
        base,
        reverse_task(160),
        dev,
        accelerator=make_accelerator("cpu"),
        task_name="reverse",
    )
    return trainer.train(), trainer


def losses(log_path: Path) -> list[float]:
    return [r["loss"] for r in map(json.loads, log_path.read_text().splitlines()) if "loss" in r]


def assert_loss_goes_down(log_path: Path) -> None:
    values = losses(log_path)
    first, last = sum(values[:8]) / 8, sum(values[-8:]) / 8
    print(f"loss {first:.3f} -> {last:.3f}")
    assert last < 0.9 * first, f"loss did not go down: first {first:.3f}, last {last:.3f}"


def state(base: BaseModel) -> dict[str, torch.Tensor]:
    return {k: v.clone() for k, v in base.model.state_dict().items()}


def assert_output_changes(model: AdaptedModel, slot: int, reference: AdaptedModel, ref_slot: int) -> None:
    params = GenerationParams(max_new_tokens=6, min_new_tokens=6)
    ids = model.encode(PROBES)
    ours = [o.token_ids for o in model.generate(ids, [slot] * len(ids), params)]
    theirs = [o.token_ids for o in reference.generate(ids, [ref_slot] * len(ids), params)]
    assert ours != theirs


@pytest.mark.parametrize(
    "family, method", [("t5", "input-tuning"), ("t5", "prompt-tuning"), ("gpt2", "input-tuning")]
)
def test_adapter_methods_learn_and_keep_the_base_bit_identical(tmp_path, family, method):
    # GPT-2's default init (std 0.02) gives near-uniform logits that no input can sharpen much
    base = build_random_base(family, "tiny", seed=0, init_scale=INIT_SCALE if family == "gpt2" else 1.0)
    before = state(base)
    dev = dev_items() if method == "input-tuning" and family == "t5" else None
    steps = 60 if method == "prompt-tuning" else 40  # a prompt alone moves a random base slowly
    result, trainer = run_training(
        tmp_path, base, method, dev=dev, eval_every=20 if dev else 0, max_steps=steps
    )
    assert_loss_goes_down(result.log_path)
    assert all(not p.requires_grad for p in base.model.parameters())
    after = base.model.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before), "a base weight changed"
    weights = load_adapter(result.out, base.fingerprint, base.d_model)  # fingerprint checked
    assert weights.config.kind == method and weights.config.base_fingerprint == base.fingerprint
    meta = weights.metadata
    assert meta["method"] == method and meta["task"] == "reverse" and meta["steps"] == str(steps)
    assert int(meta["tokens_seen"]) > 0 and float(meta["wall_time_s"]) >= 0
    assert json.loads(meta["training_args"])["prompt_length"] == 4
    if dev:
        assert set(json.loads(meta["dev_scores"])) == {"bleu", "chrf", "ter", "rougeL"}
        assert [h["step"] for h in json.loads(meta["dev_history"])] == [20, 40]
    model = AdaptedModel(base, num_slots=1)
    model.load_adapter_file(1, result.out)
    assert_output_changes(model, 1, model, 0)
    ids = model.encode(PROBES)
    dec = (
        {"decoder_input_ids": torch.zeros(len(ids), 2, dtype=torch.long)} if model.is_encoder_decoder else {}
    )
    last = [model.logits(ids, [slot] * len(ids), **dec)[:, -1] for slot in (1, 0)]  # next-token logits
    assert not torch.allclose(*last)


def test_fine_tuning_writes_a_model_folder_that_serves(tmp_path):
    base = build_random_base("t5", "tiny", seed=0)
    result, _ = run_training(tmp_path, base, "fine-tuning", lr=3e-3)
    assert_loss_goes_down(result.log_path)
    assert (result.out / "config.json").is_file()
    meta = json.loads((result.out / FINE_TUNED_METADATA).read_text())
    assert meta["method"] == "fine-tuning" and meta["steps"] == "40"
    tuned = AdaptedModel.load(result.out, device="cpu", num_slots=1)
    for name, tensor in tuned.base.model.state_dict().items():
        assert torch.equal(tensor, base.model.state_dict()[name]), (
            name
        )  # the folder holds the trained weights
    original = AdaptedModel(build_random_base("t5", "tiny", seed=0), num_slots=1)
    assert_output_changes(tuned, 0, original, 0)


def test_prompt_and_mlp_get_their_own_learning_rates(tmp_path):
    base = build_random_base("t5", "tiny", seed=0)
    _, trainer = run_training(
        tmp_path,
        base,
        max_steps=1,
        lr_prompt=0.2,
        lr_adapter=0.01,
        warmup_steps=0,
        schedule="constant",
        weight_decay=0.1,
    )
    groups = {g["name"]: g for g in trainer.optimizer.param_groups}
    assert groups["prompt"]["lr"] == 0.2 and groups["prompt"]["weight_decay"] == 0.0
    assert groups["mlp"]["lr"] == 0.01 and groups["mlp"]["weight_decay"] == 0.1
    assert groups["mlp_bias"]["weight_decay"] == 0.0
