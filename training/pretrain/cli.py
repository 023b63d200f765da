"""`inputtune pretrain`: train the project's own small T5 base from the shared data, then gate it.

The recipe, end to end: train the tokenizer (or reuse `--tokenizer DIR`), tokenise the corpus once,
train a T5 on a mixture of span corruption and prefix-LM on books plus supervised WebNLG, DART (without
its E2E rows) and Multi30k fr->en with T5-style text prefixes, fit the LR schedule into
`--time-budget-min`, save a Hugging Face folder (bf16 safetensors shards <= 15 MB, config, generation
config, tokenizer) with `pretrain_log.jsonl` and `recipe.json`, and run the gate (`eval.py`, `gate.py`).
E2E, OVERNIGHT and de/cs/ro->en stay out of the base so the adapters meet them as unfamiliar inputs.

    inputtune pretrain --preset gpu --out runs/base --device auto
    inputtune pretrain --preset gpu --out runs/base --resume
    inputtune pretrain --eval-only runs/base
    inputtune pretrain --tokenizer-only --out runs/tokenizer    # the preset's tokenizer alone, checked

`run` returns 0 when done and the gate passed, or when stopped at --stop-at-step. It raises
GateFailedError when the gate (or `--tokenizer-only`'s round trip) fails, after writing the records (the
weights are removed unless --keep-on-gate-failure); KeyboardInterrupt after saving the checkpoint when
interrupted; a TrainingError for bad options or data. `inputtune` maps them to exit codes 3, 130 and 2.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, cast

import torch
from transformers import AutoTokenizer

from adapters.base import resolve_device
from adapters.options import add_dataclass_options, dataclass_from_args
from training.data import resolve_data_dir
from training.errors import CheckpointError, ConfigError, GateFailedError, PresetError
from training.pretrain.budget import BudgetPlanner, PlannerState
from training.pretrain.config import SUPERVISED_TASKS, PretrainPreset, load_preset, preset_from_dict
from training.pretrain.gate import run_gate
from training.pretrain.loop import PRESET_FILE, Counters, RunLog, TrainLoop, hardware, restore_checkpoint
from training.pretrain.mixture import Corpus, MixtureStream, prepare_corpus, validation_batches
from training.pretrain.model import (
    TOKENIZER_FILES,
    build_model,
    count_parameters,
    make_optimizer,
    save_base_folder,
    training_device,
    validation_loss,
)
from training.pretrain.tokenizer import check_roundtrip, task_texts, train_on_data

HELD_OUT_TASKS = ("e2e", "overnight", "de-en", "cs-en", "ro-en")
LOG_FILE, RECIPE_FILE, GATE_FILE = "pretrain_log.jsonl", "recipe.json", "gate.json"
CHECKPOINT_DIR = "checkpoint"  # OUT/checkpoint


def _option(default: Any, help: str) -> Any:
    return field(default=default, metadata={"help": help})


@dataclass
class PretrainOptions:
    """The `inputtune pretrain` options, one per field (``adapters.options``); ``--set`` (repeatable,
    into ``overrides``) is added by hand."""

    preset: str = _option("gpu", "tiny | cpu | gpu, or a preset JSON path")
    out: str | None = _option(
        None,
        "output folder: the model, its log, recipe and checkpoint (with --tokenizer-only: the tokenizer)",
    )
    data_dir: str | None = _option(None, "shared data folder ($INPUTTUNE_DATA_DIR)")
    tokenizer: str | None = _option(None, "reuse this tokenizer folder instead of training one")
    device: str = _option("auto", "auto | cpu | cuda (auto: cuda when visible)")
    time_budget_min: float | None = _option(
        None,
        "wall-clock minutes for the whole run, data preparation to gate; the LR schedule is fitted to "
        "end inside it (overrides the preset)",
    )
    max_steps: int | None = _option(None, "cap on optimizer steps (overrides the preset)")
    resume: bool = _option(False, "continue from OUT/checkpoint exactly")
    stop_at_step: int | None = _option(
        None, "stop after this step with a checkpoint, as if interrupted (resume later)"
    )
    eval_only: str | None = _option(
        None, "only run the gate on this saved model folder (writes its gate.json)"
    )
    tokenizer_only: bool = _option(
        False,
        "only train the preset's tokenizer into --out and check that every task text round-trips",
    )
    keep_on_gate_failure: bool = _option(
        False, "keep the weights when the gate fails (the exit code is still 3)"
    )
    progress: bool = _option(True, "tqdm progress bar")
    overrides: list[str] = field(default_factory=list)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_dataclass_options(parser, PretrainOptions, exclude=["overrides"])
    parser.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override one preset field, e.g. train.lr=0.001 (repeatable)",
    )


def run(args: argparse.Namespace) -> int:
    """Run `inputtune pretrain` (see the module docstring)."""
    opts: PretrainOptions = dataclass_from_args(PretrainOptions, args)
    if opts.eval_only is not None:
        return _eval_only(opts, Path(opts.eval_only))
    if opts.out is None:
        raise ConfigError("--out is required (the folder to write the model to)")
    if opts.tokenizer_only:
        return _tokenizer_only(opts, Path(opts.out))
    return _pretrain(opts, Path(opts.out))


def _pretrain(opts: PretrainOptions, out: Path) -> int:
    started = time.perf_counter()
    checkpoint_dir = out / CHECKPOINT_DIR
    preset = _effective_preset(opts, out)
    data_dir = resolve_data_dir(opts.data_dir)
    if opts.resume and not checkpoint_dir.is_dir():
        raise CheckpointError(f"--resume needs a checkpoint in {checkpoint_dir}; run without --resume")
    given = Path(opts.tokenizer) if opts.tokenizer is not None else None
    missing = [n for n in TOKENIZER_FILES if given and not (given / n).is_file()]
    if missing:
        raise ConfigError(
            f"--tokenizer {given} lacks {missing}: give a folder made by `inputtune pretrain "
            "--tokenizer-only` (or a run's OUT/tokenizer)"
        )
    out.mkdir(parents=True, exist_ok=True)
    if not opts.resume:
        (out / LOG_FILE).unlink(missing_ok=True)
    runlog = RunLog(out / LOG_FILE)
    device = training_device(opts.device)
    runlog("start", preset=preset.name, argv=sys.argv, resume=opts.resume, hardware=hardware(device))

    tokenizer, tokenizer_dir, tokenizer_facts = _tokenizer(given, opts.data_dir, preset, out, runlog)
    prep_started = time.perf_counter()
    corpus = prepare_corpus(tokenizer, preset.data, data_dir)
    corpus.facts["prepare_s"] = round(time.perf_counter() - prep_started, 2)
    runlog("data", **corpus.facts)
    stream = MixtureStream(corpus, preset.data, preset.mixture, preset.train.seed)

    train = preset.train
    model = build_model(preset.model, tokenizer, train.seed, device)
    optimizer = make_optimizer(model, train.lr, train.weight_decay, train.betas, device)
    budget_s = None if train.time_budget_min is None else train.time_budget_min * 60
    planner = BudgetPlanner(
        budget_s,
        train.max_steps,
        measure_steps=train.measure_steps,
        reserve_s=train.reserve_s,
        replan_every=train.log_every,
    )
    loop = TrainLoop(
        model=model,
        forward=model,
        optimizer=optimizer,
        stream=stream,
        planner=planner,
        train=train,
        device=device,
        checkpoint_dir=checkpoint_dir,
        runlog=runlog,
        preset_dict=preset.to_dict(),
        stop_at_step=opts.stop_at_step,
        progress=opts.progress,
    )
    step = 0
    if opts.resume:
        extra = restore_checkpoint(checkpoint_dir, model, optimizer)
        step, loop.counters = int(extra["step"]), Counters(**extra["counters"])
        planner.start(PlannerState(**extra["planner"]), start_time=started)
        runlog("resumed", step=step, planned_total=planner.total_steps)
    else:
        planner.start(start_time=started)
    if train.compile and device.type == "cuda":
        loop.forward = cast(torch.nn.Module, torch.compile(model))
    n_params = count_parameters(model)
    runlog(
        "model",
        parameters=n_params,
        config=preset.model.__dict__,
        vocab=model.config.vocab_size,
        mixture=stream.describe(),
    )

    step, interrupted = loop.run(step)
    val = validation_loss(model, validation_batches(corpus, preset.data, rows=32), device)
    runlog("validation", step=step, **{f"val_loss_{k}": round(v, 4) for k, v in val.items()})
    if interrupted or (opts.stop_at_step is not None and step < (planner.total_steps or step + 1)):
        print(
            f"stopped at step {step}; continue with --resume (checkpoint in {checkpoint_dir})",
            file=sys.stderr,
        )
        if interrupted:
            raise KeyboardInterrupt  # after the checkpoint: `inputtune` exits 130
        return 0

    save_started = time.perf_counter()
    files = save_base_folder(model, tokenizer_dir, out)
    save_s = round(time.perf_counter() - save_started, 2)
    runlog("saved", files=files, save_s=save_s)
    counters = loop.counters
    del model, optimizer, loop
    if device.type == "cuda":
        torch.cuda.empty_cache()
    recipe: dict[str, Any] = {
        "preset": preset.to_dict(),
        "argv": ["inputtune", *sys.argv[1:]],  # not this machine's path to the program
        "tokenizer": tokenizer_facts,
        "sources": _recipe_sources(corpus, preset, data_dir),
        "mixture": {
            "weights": preset.mixture.normalised(),
            "step_tokens": preset.mixture.step_tokens,
            "per_step": stream.describe(),
        },
        "model": {"parameters": n_params, "files": files, "bytes": sum(f["bytes"] for f in files)},
        "training": {
            "steps": step,
            "planned_total_steps": planner.total_steps,
            "step_time_s": planner.state.step_time_s,
            "tokens": counters.tokens,
            "padded_tokens": counters.padded_tokens,
            "tokens_by_source": counters.per_source_tokens,
            "tokens_by_source_share": _shares(counters.per_source_tokens),
            "train_s": round(counters.train_s, 2),
            "tokens_per_s": round(counters.tokens / max(1e-9, counters.train_s), 1),
            "validation_loss": {k: round(v, 4) for k, v in val.items()},
        },
        "timings_s": {
            "tokenizer_train": tokenizer_facts.get("train_s", 0.0),
            "data_prepare": corpus.facts["prepare_s"],
            "data_tokenize": corpus.facts["tokenize_s"],
            "save": save_s,
        },
        "hardware": hardware(device),
    }
    passed = run_gate(
        out, preset, opts.data_dir, device, runlog, recipe, keep_weights=opts.keep_on_gate_failure
    )
    recipe["timings_s"]["wall"] = round(time.perf_counter() - started, 2)
    (out / RECIPE_FILE).write_text(json.dumps(recipe, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    runlog("done", gate_passed=passed, wall_s=recipe["timings_s"]["wall"])
    if not passed:
        raise _gate_failed(out, recipe)
    return 0


def _tokenizer(
    given: Path | None, data_dir: str | None, preset: PretrainPreset, out: Path, runlog: RunLog
) -> tuple[Any, Path, dict]:
    """Load --tokenizer, or the run's own from an earlier (resumed) run, or train one."""
    folder = out / "tokenizer"  # the run keeps its own copy, so --resume finds it
    facts: dict[str, Any] = {"folder": str(folder)}
    if given is not None and given.resolve() != folder.resolve():
        folder.mkdir(parents=True, exist_ok=True)
        for name in TOKENIZER_FILES:
            shutil.copyfile(given / name, folder / name)
        facts["copied_from"] = str(given)
    if not (folder / "tokenizer.json").is_file():
        trained = train_on_data(preset.tokenizer, data_dir, folder)
        facts.update(
            trained=True,
            corpus="sources and targets of every task's train split + book paragraphs (training.pretrain."
            "tokenizer.corpus_texts): the held-out tasks' words get vocabulary pieces, never a training signal",
            corpus_texts=trained["corpus_texts"],
            corpus_chars=trained["corpus_chars"],
            train_s=round(trained["read_s"] + trained["train_s"], 2),
        )
    else:
        facts["trained"] = False  # given with --tokenizer, or trained by the run this one resumes
    tokenizer = AutoTokenizer.from_pretrained(str(folder))
    facts["vocab_size"] = len(tokenizer)
    runlog("tokenizer", **facts)
    return tokenizer, folder, facts


def _recipe_sources(corpus: Corpus, preset: PretrainPreset, data_dir: Path) -> dict[str, Any]:
    f = corpus.facts
    return {
        # the files below are relative to the data folder (--data-dir, default ../shared/data); its
        # absolute path on the machine that trained the base is left out of a file that is shipped
        "data_dir": "relative to --data-dir",
        "books": {
            "files": "pretrain_en/books/*.txt",
            "train_books": f["books_train"],
            "heldout_books": f["books_heldout"],
            "train_tokens": f["book_tokens_train"],
            "val_tokens": f["book_tokens_val"],
            "book_chars_cap": preset.data.book_chars,
        },
        "supervised": {
            task: {
                "split": "train",
                "examples": f[f"{task}_examples"],
                "tokens": f[f"{task}_tokens"],
                "truncated_examples": f[f"{task}_truncated_examples"],
                "prefix": preset.data.prefixes[task],
                **({"exclude_e2e": True} if task == "dart" else {}),
            }
            for task in SUPERVISED_TASKS
        },
        "kept_out_of_the_base": list(HELD_OUT_TASKS),
    }


def _shares(tokens: dict[str, int]) -> dict[str, float]:
    total = sum(tokens.values()) or 1
    return {k: round(v / total, 4) for k, v in tokens.items()}


def _effective_preset(opts: PretrainOptions, out: Path) -> PretrainPreset:
    """The preset with --set overrides and the CLI's step/time limits; a resumed run keeps its own."""
    saved = out / CHECKPOINT_DIR / PRESET_FILE
    if opts.resume and saved.is_file():
        if opts.overrides:
            raise PresetError("--set cannot change the recipe of a resumed run: resume without it")
        preset = preset_from_dict(json.loads(saved.read_text(encoding="utf-8")))
    else:
        preset = load_preset(opts.preset, opts.overrides)
    if opts.time_budget_min is not None:
        preset.train.time_budget_min = opts.time_budget_min
    if opts.max_steps is not None:
        preset.train.max_steps = opts.max_steps
    if preset.train.time_budget_min is None and preset.train.max_steps is None:
        raise PresetError("give --time-budget-min or --max-steps (the preset sets neither)")
    return preset


def _gate_failed(folder: Path, record: dict[str, Any]) -> GateFailedError:
    return GateFailedError(f"the base in {folder} failed its gate: " + "; ".join(record["gate"]["reasons"]))


def _eval_only(opts: PretrainOptions, folder: Path) -> int:
    """Gate a saved folder: its recipe.json's preset if present, else --preset."""
    recipe_path = folder / RECIPE_FILE
    if recipe_path.is_file():
        preset = preset_from_dict(json.loads(recipe_path.read_text(encoding="utf-8"))["preset"])
    else:
        preset = load_preset(opts.preset, opts.overrides)
    device = resolve_device(opts.device)
    record: dict[str, Any] = {}
    # Never delete weights that were only to be scored.
    passed = run_gate(folder, preset, opts.data_dir, device, RunLog(None), record, keep_weights=True)
    (folder / GATE_FILE).write_text(json.dumps(record, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    summary = {k: v for k, v in record["scores"].items() if k != "samples"} | {"gate": record["gate"]}
    print(json.dumps(summary, indent=2))
    if not passed:
        raise _gate_failed(folder, record)
    return 0


def _tokenizer_only(opts: PretrainOptions, out: Path) -> int:
    """Train the preset's tokenizer into `out`, then check that every text of every task split
    round-trips (encode -> decode gives it back)."""
    if opts.resume or opts.tokenizer:
        raise ConfigError("--tokenizer-only trains a new tokenizer: leave out --resume and --tokenizer")
    preset = load_preset(opts.preset, opts.overrides)
    facts = train_on_data(preset.tokenizer, opts.data_dir, out)
    print(
        f"corpus: {facts['corpus_texts']:,} texts, {facts['corpus_chars']:,} chars ({facts['read_s']:.1f} s)"
    )
    print(f"trained vocab_size={preset.tokenizer.vocab_size} in {facts['train_s']:.1f} s -> {out}")
    tokenizer = AutoTokenizer.from_pretrained(str(out))
    texts = task_texts(opts.data_dir)
    started = time.perf_counter()
    failures = check_roundtrip(tokenizer, texts)
    seconds = time.perf_counter() - started
    print(f"round trip: {len(failures)} failures over {len(set(texts)):,} texts ({seconds:.1f} s)")
    for text in failures[:10]:
        print("  FAIL:", repr(text))
    if failures:
        raise GateFailedError(f"the tokenizer in {out} does not round-trip {len(failures)} task texts")
    return 0
