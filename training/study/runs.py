"""One study run: train one method on one task with the study's fixed budget, decode the test sample,
score it with bootstrap intervals, and write ``<results>/runs/<task>.<method>.json``.

Every method gets the same steps, batch size, prompt length and test sample; the learning rates are
the best of the demo's E2E sweep per method (demo/README.md), not a per-task sweep (no time for one).
"""

from __future__ import annotations

import dataclasses
import json
import logging
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from adapters import AdaptedModel, GenerationParams, load_base
from training.common.device import make_accelerator
from training.config import AdapterTrainConfig
from training.evaluate import evaluate
from training.study.stats import bootstrap_scores
from training.study.tasks import load_study_task

log = logging.getLogger(__name__)

METHODS = {"pt": "prompt-tuning", "it": "input-tuning", "ft": "fine-tuning"}
LEARNING_RATES = {  # the best of demo/README.md's E2E sweep per method
    "pt": {"lr_prompt": 0.3},
    "it": {"lr_prompt": 0.03, "lr_adapter": 3e-3},
    "ft": {"lr": 5e-4},
}


@dataclass
class RunSettings:
    """The budget every run gets (the same for every method and task)."""

    model: str
    work_dir: str  # adapters, fine-tuned folders and logs (not committed)
    data_dir: str | None = None
    steps: int = 300
    batch_size: int = 16
    prompt_length: int = 20
    test_items: int = 300
    max_new_tokens: int = 64
    eval_batch_size: int = 32
    seed: int = 0


def run_path(results: Path, task: str, method: str, tag: str = "") -> Path:
    return results / "runs" / f"{task}.{method}{tag}.json"


def run_one(
    task: str, method: str, settings: RunSettings, results: Path, prompt_length: int | None = None
) -> dict[str, Any]:
    """Train, decode and score one (task, method); writes and returns the run's JSON record."""
    torch.set_num_threads(1)
    plen = settings.prompt_length if prompt_length is None else prompt_length
    tag = "" if prompt_length is None else f".p{plen}"
    data = load_study_task(task, settings.data_dir, settings.test_items)
    work = Path(settings.work_dir)
    work.mkdir(parents=True, exist_ok=True)
    out = work / (f"{task}.{method}{tag}" + ("" if method == "ft" else ".safetensors"))
    config = AdapterTrainConfig(
        model=settings.model,
        out=str(out),
        method=METHODS[method],
        max_steps=settings.steps,
        batch_size=settings.batch_size,
        prompt_length=plen,
        seed=settings.seed,
        device="cpu",
        progress=False,
        log_every=50,
        max_source_tokens=128,
        max_target_tokens=96,
        **LEARNING_RATES[method],
    )
    accelerator = make_accelerator("cpu")
    base = load_base(settings.model, device="cpu", dtype="float32")
    from training.trainer import Trainer

    trainer = Trainer(config, base, data.train, None, None, accelerator, task)
    trainable_params = sum(p.numel() for p in trainer.trainable.module.parameters() if p.requires_grad)
    result = trainer.train()
    del trainer, base

    started = time.perf_counter()
    if method == "ft":
        model = AdaptedModel.load(str(out), device="cpu", dtype="float32", num_slots=1)
        slot = 0
    else:
        model = AdaptedModel.load(settings.model, device="cpu", dtype="float32", num_slots=1)
        model.load_adapter_file(1, out)
        slot = 1
    params = GenerationParams(max_new_tokens=settings.max_new_tokens)
    scored = evaluate(model, slot, data.test, params, settings.eval_batch_size, num_examples=3)
    references = [list(item.references) for item in data.test]
    intervals = bootstrap_scores(scored["hypotheses"], references)
    record = {
        "task": task,
        "method": method,
        "prompt_length": plen,
        "settings": dataclasses.asdict(settings),
        "learning_rates": LEARNING_RATES[method],
        "trainable_parameters": trainable_params,
        "train_examples": len(data.train),
        "steps": result.steps,
        "tokens_seen": result.tokens_seen,
        "train_s": round(result.wall_time_s, 1),
        "eval_s": round(time.perf_counter() - started, 1),
        "test_items": len(data.test),
        "test_total": data.test_total,
        "scores": scored["scores"],
        "intervals": intervals,
        "items_per_s": scored["items_per_s"],
        "examples": scored["examples"],
        "hypotheses": scored["hypotheses"],
    }
    path = run_path(results, task, method, tag)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(record, indent=1, ensure_ascii=False) + "\n")
    tmp.replace(path)
    return record
