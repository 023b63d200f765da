"""One study run: train one method on one task with the study's fixed budget, decode the test sample,
score it with bootstrap intervals, and write ``<results>/runs/<task>.<method>.json``.

Every method gets the same steps, batch size, prompt length and test sample. Learning rates: each
method's default is the best of the demo's E2E sweep (demo/README.md); on every task (``SWEEP_TASKS``)
each method also runs the ``SWEEP`` settings, and the setting with the best dev chrF is the one reported
(``select_runs``). Part 4 runs input- and prompt-tuning on ``PROMPT_TASK`` at ``PROMPT_LENGTHS``.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import re
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
SWEEP_TASKS = (  # every task, in the order their sweeps run: an unfamiliar and a familiar one first
    "e2e",
    "fr-en",
    "de-en",
    "webnlg",
    "e2e-opaque",
    "e2e-plain",
    "dart",
    "overnight",
    "ro-en",
    "cs-en",
)
SWEEP = {  # the other settings each method tries there (the default is the third)
    "pt": [{"lr_prompt": 0.1}, {"lr_prompt": 1.0}],
    "it": [{"lr_prompt": 0.3, "lr_adapter": 3e-3}, {"lr_prompt": 0.03, "lr_adapter": 1e-2}],
    "ft": [{"lr": 1.5e-3}],
}
DEV_ITEMS = 150  # dev sources decoded to select a sweep setting
SELECT_METRIC = "chrf"  # chrF: less noisy than BLEU at the low scores of this base
PROMPT_TASK = "e2e"
PROMPT_LENGTHS = {"it": (0, 5, 100), "pt": (5, 100)}  # besides the default 20


@dataclass(frozen=True)
class RunSpec:
    """One run of the study: a method on a task, with the default prompt length and learning rates
    unless given."""

    task: str
    method: str
    prompt_length: int | None = None
    lr: tuple[tuple[str, float], ...] | None = None

    @property
    def learning_rates(self) -> dict[str, float]:
        return dict(self.lr) if self.lr is not None else dict(LEARNING_RATES[self.method])

    @property
    def tag(self) -> str:
        """ "" for the default run; ``.p5`` for a prompt length; ``.lr-prompt0.1`` for a sweep setting."""
        tag = "" if self.prompt_length is None else f".p{self.prompt_length}"
        if self.lr is not None:
            tag += ".lr" + "".join(f"-{k.removeprefix('lr_') or 'lr'}{v:g}" for k, v in self.lr)
        return tag

    @property
    def name(self) -> str:
        return f"{self.task}.{self.method}{self.tag}"

    @property
    def needs_dev(self) -> bool:
        return self.task in SWEEP_TASKS and self.prompt_length is None


def study_plan(tasks: tuple[str, ...]) -> list[RunSpec]:
    """Every run of the study, in the order they are worth having: part 1's default runs, part 4's
    prompt lengths, then the learning-rate sweep."""
    plan = [RunSpec(t, m) for t in tasks for m in METHODS]
    if PROMPT_TASK in tasks:
        plan += [RunSpec(PROMPT_TASK, m, plen) for m, lens in PROMPT_LENGTHS.items() for plen in lens]
    plan += [
        RunSpec(t, m, None, tuple(lr.items()))
        for t in SWEEP_TASKS
        if t in tasks
        for m in SWEEP
        for lr in SWEEP[m]
    ]
    return plan


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


def _write(path: Path, record: dict[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(record, indent=1, ensure_ascii=False) + "\n")
    tmp.replace(path)


def _load_trained(settings: RunSettings, spec: RunSpec, out: Path) -> tuple[AdaptedModel, int]:
    if spec.method == "ft":
        return AdaptedModel.load(str(out), device="cpu", dtype="float32", num_slots=1), 0
    model = AdaptedModel.load(settings.model, device="cpu", dtype="float32", num_slots=1)
    model.load_adapter_file(1, out)
    return model, 1


def _dev_scores(model: AdaptedModel, slot: int, spec: RunSpec, settings: RunSettings) -> dict[str, Any]:
    dev = load_study_task(spec.task, settings.data_dir, DEV_ITEMS, split="dev")
    params = GenerationParams(max_new_tokens=settings.max_new_tokens)
    scored = evaluate(model, slot, dev.test, params, settings.eval_batch_size, num_examples=0)
    return {"items": len(dev.test), "scores": scored["scores"]}


def trained_path(settings: RunSettings, spec: RunSpec) -> Path:
    return Path(settings.work_dir) / (spec.name + ("" if spec.method == "ft" else ".safetensors"))


def add_dev(spec: RunSpec, settings: RunSettings, results: Path) -> dict[str, Any] | None:
    """Dev scores for a finished run that lacks them (runs made before the sweep), from its trained
    adapter or model in ``work_dir``; None when that is gone (the run must then be redone)."""
    path = run_path(results, spec.task, spec.method, spec.tag)
    out = trained_path(settings, spec)
    if not out.exists():
        return None
    torch.set_num_threads(1)
    record = json.loads(path.read_text())
    model, slot = _load_trained(settings, spec, out)
    record["dev"] = _dev_scores(model, slot, spec, settings)
    _write(path, record)
    return record


def run_one(spec: RunSpec, settings: RunSettings, results: Path) -> dict[str, Any]:
    """Train, decode and score one run; writes and returns its JSON record."""
    torch.set_num_threads(1)
    task, method = spec.task, spec.method
    plen = settings.prompt_length if spec.prompt_length is None else spec.prompt_length
    data = load_study_task(task, settings.data_dir, settings.test_items)
    work = Path(settings.work_dir)
    work.mkdir(parents=True, exist_ok=True)
    out = trained_path(settings, spec)
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
        **spec.learning_rates,
    )
    accelerator = make_accelerator("cpu")
    base = load_base(settings.model, device="cpu", dtype="float32")
    from training.trainer import Trainer

    trainer = Trainer(config, base, data.train, None, None, accelerator, task)
    trainable_params = sum(p.numel() for p in trainer.trainable.module.parameters() if p.requires_grad)
    result = trainer.train()
    del trainer, base

    started = time.perf_counter()
    model, slot = _load_trained(settings, spec, out)
    params = GenerationParams(max_new_tokens=settings.max_new_tokens)
    scored = evaluate(model, slot, data.test, params, settings.eval_batch_size, num_examples=3)
    references = [list(item.references) for item in data.test]
    intervals = bootstrap_scores(scored["hypotheses"], references)
    record = {
        "task": task,
        "method": method,
        "prompt_length": plen,
        "settings": dataclasses.asdict(settings),
        "learning_rates": spec.learning_rates,
        "lr_default": spec.lr is None,
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
    if spec.needs_dev:
        record["dev"] = _dev_scores(model, slot, spec, settings)
    _write(run_path(results, task, method, spec.tag), record)
    return record


def select_runs(results: Path) -> dict[str, Any]:
    """Every finished run, read back: ``selected[task][method]`` is the run part 1 reports (the best dev
    score among the task's settings where its sweep is complete for every method, else the default
    run), ``sweep[task][method]`` every setting tried on a task, ``prompt[method][length]`` part 4's
    runs (the default length included)."""
    records = [
        json.loads(p.read_text()) | {"name": p.stem} for p in sorted((results / "runs").glob("*.json"))
    ]
    selected: dict[str, dict[str, Any]] = {}
    sweep: dict[str, dict[str, list[dict[str, Any]]]] = {}
    prompt: dict[str, dict[int, dict[str, Any]]] = {}
    for r in records:
        default_length = re.search(r"\.p\d+(\.|$)", r["name"]) is None
        if r["task"] == PROMPT_TASK and r["method"] in PROMPT_LENGTHS and r.get("lr_default", True):
            prompt.setdefault(r["method"], {})[r["prompt_length"]] = r
        if not default_length:
            continue
        if r["task"] in SWEEP_TASKS:
            sweep.setdefault(r["task"], {}).setdefault(r["method"], []).append(r)
        elif r.get("lr_default", True):
            selected.setdefault(r["task"], {})[r["method"]] = r
    for task, methods in sweep.items():
        # selection only where every method ran all its settings (equal sweeps); elsewhere the defaults
        complete = all(sum("dev" in r for r in methods.get(m, [])) == 1 + len(SWEEP[m]) for m in SWEEP)
        for method, tried in methods.items():
            with_dev = [r for r in tried if "dev" in r]
            if complete:
                best = max(with_dev, key=lambda r: r["dev"]["scores"][SELECT_METRIC])
                selected.setdefault(task, {})[method] = best | {"selected_from": len(with_dev)}
            else:
                default = next((r for r in tried if r.get("lr_default", True)), None)
                if default is not None:
                    selected.setdefault(task, {})[method] = default
    return {"selected": selected, "sweep": sweep, "prompt": prompt}
