"""Checkpoints, resume, early stopping and the time budget."""

from __future__ import annotations

import json

import pytest
import torch

from adapters import load_adapter
from adapters.testing import build_random_base
from tests.training.test_train_smoke import dev_items, losses, run_training
from training import trainer as trainer_module
from training.batching import BatchStream

pytestmark = pytest.mark.usefixtures("one_thread")  # tests/training/conftest.py


@pytest.mark.parametrize("method", ["input-tuning", "fine-tuning"])
def test_resuming_a_stopped_run_gives_the_same_weights_as_one_go(tmp_path, method):
    """20 steps at once == 10 steps, stop, resume for 10 (dropout on: the RNG state travels too)."""
    common = dict(max_steps=20, grad_accum=2, batch_size=4, log_every=1)
    if method == "fine-tuning":
        common["lr"] = 1e-3
    one_go, _ = run_training(tmp_path / "a", build_random_base("t5", "tiny", seed=0), method, **common)
    split = tmp_path / "b"
    first, _ = run_training(
        split, build_random_base("t5", "tiny", seed=0), method, stop_after_steps=10, **common
    )
    assert first.stop_reason == "stop_after_steps" and first.steps == 10
    checkpoint = first.out.parent / (first.out.name + ".ckpt")
    assert (checkpoint / "state.pt").is_file()
    second, _ = run_training(
        split, build_random_base("t5", "tiny", seed=0), method, resume=str(checkpoint), **common
    )
    assert second.steps == 20 and second.stop_reason == "max_steps"
    assert losses(second.log_path) == pytest.approx(losses(one_go.log_path), rel=1e-6)
    if method == "fine-tuning":
        from safetensors.torch import load_file

        a, b = load_file(one_go.out / "model.safetensors"), load_file(second.out / "model.safetensors")
    else:
        a, b = load_adapter(one_go.out).tensors, load_adapter(second.out).tensors
    assert a.keys() == b.keys()
    for name in a:
        assert torch.allclose(a[name], b[name], rtol=0, atol=1e-6), name
    if method != "fine-tuning":
        assert load_adapter(second.out).metadata["steps"] == "20"


def test_early_stopping_keeps_the_best_weights(tmp_path, monkeypatch):
    scores = iter([5.0, 9.0, 7.0, 6.0, 8.0])
    seen_prompts = []

    def scripted_evaluate(model, slot, items, params, batch_size):
        seen_prompts.append(model.bank.slot_prompt(slot).clone())
        bleu = next(scores)
        return {
            "scores": {"bleu": bleu, "chrf": bleu, "ter": 100 - bleu, "rougeL": None},
            "warnings": [],
            "seconds": 0.0,
            "examples": [],
        }

    monkeypatch.setattr(trainer_module, "evaluate", scripted_evaluate)
    base = build_random_base("t5", "tiny", seed=0)
    result, trainer = run_training(tmp_path, base, dev=dev_items(), eval_every=3, patience=2, max_steps=30)
    assert result.stop_reason == "early_stopping"
    assert result.steps == 12 and result.best_step == 6  # 5, 9 (best), 7, 6: two evaluations without gain
    weights = load_adapter(result.out)
    assert torch.equal(weights.tensors["prompt"], seen_prompts[1])
    assert not torch.equal(weights.tensors["prompt"], seen_prompts[3])
    assert json.loads(weights.metadata["dev_scores"])["bleu"] == 9.0
    assert weights.metadata["best_step"] == "6" and weights.metadata["stop_reason"] == "early_stopping"
    assert [h["bleu"] for h in json.loads(weights.metadata["dev_history"])] == [5.0, 9.0, 7.0, 6.0]


def test_time_budget_stops_cleanly_and_writes_the_output(tmp_path):
    base = build_random_base("t5", "tiny", seed=0)
    result, _ = run_training(
        tmp_path, base, max_steps=100_000, time_budget_min=0.3 / 60, dev=dev_items(), eval_every=10_000
    )
    assert result.stop_reason == "time_budget" and 0 < result.steps < 100_000
    assert result.best_step == result.steps  # the final evaluation ran on the last weights
    assert load_adapter(result.out).metadata["stop_reason"] == "time_budget"
    assert (tmp_path / "adapter.safetensors.ckpt" / "state.pt").is_file()


def test_resume_refuses_another_base(tmp_path):
    first, _ = run_training(
        tmp_path, build_random_base("t5", "tiny", seed=0), max_steps=4, stop_after_steps=2
    )
    with pytest.raises(ValueError, match="another base model"):
        run_training(
            tmp_path,
            build_random_base("t5", "tiny", seed=1),
            max_steps=4,
            resume=str(tmp_path / "adapter.safetensors.ckpt"),
        )
    assert first.steps == 2


def test_batch_stream_is_deterministic_and_covers_each_epoch():
    lengths = [((i * 7) % 13) + 1 for i in range(50)]
    stream = BatchStream(lengths, batch_size=4, seed=3, bucket_batches=3)
    again = BatchStream(lengths, batch_size=4, seed=3, bucket_batches=3)
    n = stream.batches_per_epoch
    epoch0 = [stream.batch(i) for i in range(n)]
    assert sorted(i for b in epoch0 for i in b) == list(range(50))
    assert [again.batch(i) for i in range(n, 2 * n)] == [stream.batch(i) for i in range(n, 2 * n)]
    assert [stream.batch(i) for i in range(n, 2 * n)] != epoch0  # each epoch reshuffles
    spread = [max(lengths[i] for i in b) - min(lengths[i] for i in b) for b in epoch0]
    assert sum(spread) / len(spread) < 6  # similar lengths batch together (random batches spread ~9)
