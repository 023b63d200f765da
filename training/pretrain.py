"""`inputtune pretrain`: train the project's own small T5 base from the shared data, then gate it.

The recipe, end to end: train the tokenizer (or reuse `--tokenizer DIR`), tokenise the corpus once,
train a T5 on a mixture of span corruption and prefix-LM on books plus supervised WebNLG, DART (without
its E2E rows) and Multi30k fr->en with T5-style text prefixes, fit the LR schedule into
`--time-budget-min`, save a Hugging Face folder (bf16 safetensors shards <= 15 MB, config, generation
config, tokenizer) with `pretrain_log.jsonl` and `recipe.json`, and run the gate (pretrain_eval.py).
E2E, OVERNIGHT and de/cs/ro->en stay out of the base so the adapters meet them as unfamiliar inputs.

    python -m training.pretrain --preset gpu --out runs/base --device auto
    python -m training.pretrain --preset gpu --out runs/base --resume
    python -m training.pretrain --eval-only runs/base

Exit codes: 0 done and gate passed (or stopped at --stop-at-step), 2 bad arguments or data,
3 gate failed (the weights are removed unless --keep-on-gate-failure), 130 interrupted (checkpoint saved).
"""

from __future__ import annotations

import argparse
import json
import logging
import shutil
import sys
import time
from pathlib import Path
from typing import Any, cast

import torch

from training.data import DataNotFoundError, resolve_data_dir
from training.pretrain_budget import BudgetPlanner, PlannerState
from training.pretrain_config import SUPERVISED_TASKS, Preset, PresetError, load_preset, preset_from_dict
from training.pretrain_data import Corpus, MixtureStream, prepare_corpus, validation_batches
from training.pretrain_gate import run_gate
from training.pretrain_loop import Counters, RunLog, TrainLoop, hardware
from training.pretrain_model import (
    TOKENIZER_FILES,
    build_model,
    count_parameters,
    load_checkpoint,
    make_optimizer,
    save_base_folder,
    validation_loss,
)

log = logging.getLogger("training.pretrain")

HELD_OUT_TASKS = ("e2e", "overnight", "de-en", "cs-en", "ro-en")
LOG_FILE, RECIPE_FILE = "pretrain_log.jsonl", "recipe.json"
EXIT_OK, EXIT_USAGE, EXIT_GATE, EXIT_INTERRUPTED = 0, 2, 3, 130


def add_pretrain_arguments(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    """The `inputtune pretrain` options (shared by `python -m training.pretrain`)."""
    parser.add_argument(
        "--preset", default="gpu", help="tiny | cpu | gpu, or a preset JSON path (default gpu)"
    )
    parser.add_argument("--out", type=Path, help="output folder: the model, its log, recipe and checkpoint")
    parser.add_argument(
        "--data-dir", type=Path, default=None, help="shared data folder ($INPUTTUNE_DATA_DIR)"
    )
    parser.add_argument(
        "--tokenizer", type=Path, default=None, help="reuse this tokenizer folder instead of training one"
    )
    parser.add_argument("--device", default="auto", help="auto | cpu | cuda (auto: cuda when visible)")
    parser.add_argument(
        "--time-budget-min",
        type=float,
        default=None,
        help="wall-clock minutes for the whole run, data preparation to gate; the LR schedule "
        "is fitted to end inside it (overrides the preset)",
    )
    parser.add_argument(
        "--max-steps", type=int, default=None, help="cap on optimizer steps (overrides the preset)"
    )
    parser.add_argument("--resume", action="store_true", help="continue from OUT/checkpoint exactly")
    parser.add_argument(
        "--stop-at-step",
        type=int,
        default=None,
        help="stop after this step with a checkpoint, as if interrupted (resume later)",
    )
    parser.add_argument(
        "--eval-only",
        type=Path,
        default=None,
        metavar="DIR",
        help="only run the gate on a saved model folder (writes DIR/gate.json)",
    )
    parser.add_argument(
        "--keep-on-gate-failure",
        action="store_true",
        help="keep the weights when the gate fails (the exit code is still 3)",
    )
    parser.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override one preset field, e.g. train.lr=0.001 (repeatable)",
    )
    parser.add_argument("--no-progress", action="store_true", help="no tqdm progress bar")
    return parser


def _tokenizer(args: argparse.Namespace, preset: Preset, out: Path, runlog: RunLog) -> tuple[Any, Path, dict]:
    """Load --tokenizer, or the run's own from an earlier (resumed) run, or train one."""
    from transformers import AutoTokenizer

    from training.tokenizer import corpus_texts, train_tokenizer

    folder = out / "tokenizer"  # the run keeps its own copy, so --resume finds it
    facts: dict[str, Any] = {"folder": str(folder)}
    if args.tokenizer is not None and args.tokenizer.resolve() != folder.resolve():
        folder.mkdir(parents=True, exist_ok=True)
        for name in TOKENIZER_FILES:
            shutil.copyfile(args.tokenizer / name, folder / name)
        facts["copied_from"] = str(args.tokenizer)
    if not (folder / "tokenizer.json").is_file():
        started = time.perf_counter()
        texts = corpus_texts(args.data_dir, preset.tokenizer.book_chars)
        train_tokenizer(texts, preset.tokenizer.vocab_size, folder, preset.tokenizer.num_sentinels)
        facts.update(
            trained=True,
            corpus="sources and targets of every task's train split + book paragraphs (training.tokenizer."
            "corpus_texts): the held-out tasks' words get vocabulary pieces, never a training signal",
            corpus_texts=len(texts),
            corpus_chars=sum(map(len, texts)),
            train_s=round(time.perf_counter() - started, 2),
        )
    else:
        facts["trained"] = False  # given with --tokenizer, or trained by the run this one resumes
    tokenizer = AutoTokenizer.from_pretrained(str(folder))
    facts["vocab_size"] = len(tokenizer)
    runlog("tokenizer", **facts)
    return tokenizer, folder, facts


def _recipe_sources(corpus: Corpus, preset: Preset, data_dir: Path) -> dict[str, Any]:
    f = corpus.facts
    return {
        "data_dir": str(data_dir),
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


def run_pretrain(args: argparse.Namespace) -> int:
    """Run `inputtune pretrain` (see the module docstring); returns the exit code."""
    if args.eval_only is not None:
        return run_eval_only(args)
    if args.out is None:
        print("error: --out is required (the folder to write the model to)", file=sys.stderr)
        return EXIT_USAGE
    started = time.perf_counter()
    out: Path = args.out
    checkpoint_dir = out / "checkpoint"
    try:
        preset = _effective_preset(args)
        data_dir = resolve_data_dir(args.data_dir)
        if args.resume and not checkpoint_dir.is_dir():
            raise PresetError(f"--resume needs a checkpoint in {checkpoint_dir}; run without --resume")
        missing = [n for n in TOKENIZER_FILES if args.tokenizer and not (args.tokenizer / n).is_file()]
        if missing:
            raise PresetError(
                f"--tokenizer {args.tokenizer} lacks {missing}: give a folder made by training.tokenizer"
            )
    except (PresetError, DataNotFoundError) as e:
        print(f"error: {e}", file=sys.stderr)
        return EXIT_USAGE
    out.mkdir(parents=True, exist_ok=True)
    if not args.resume:
        (out / LOG_FILE).unlink(missing_ok=True)
    runlog = RunLog(out / LOG_FILE)
    from adapters.base import resolve_device

    device = resolve_device(args.device)
    if device.type == "cuda":
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True
    runlog("start", preset=preset.name, argv=sys.argv, resume=args.resume, hardware=hardware(device))

    tokenizer, tokenizer_dir, tokenizer_facts = _tokenizer(args, preset, out, runlog)
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
        stop_at_step=args.stop_at_step,
        progress=not args.no_progress,
    )
    step = 0
    if args.resume:
        extra = load_checkpoint(checkpoint_dir, model, optimizer)
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
    if interrupted or (args.stop_at_step is not None and step < (planner.total_steps or step + 1)):
        print(
            f"stopped at step {step}; continue with --resume (checkpoint in {checkpoint_dir})",
            file=sys.stderr,
        )
        return EXIT_INTERRUPTED if interrupted else EXIT_OK

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
        "argv": sys.argv,
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
        out, preset, args.data_dir, device, runlog, recipe, keep_weights=args.keep_on_gate_failure
    )
    recipe["timings_s"]["wall"] = round(time.perf_counter() - started, 2)
    (out / RECIPE_FILE).write_text(json.dumps(recipe, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    code = EXIT_OK if passed else EXIT_GATE
    runlog("done", exit_code=code, wall_s=recipe["timings_s"]["wall"])
    return code


def _shares(tokens: dict[str, int]) -> dict[str, float]:
    total = sum(tokens.values()) or 1
    return {k: round(v / total, 4) for k, v in tokens.items()}


def _effective_preset(args: argparse.Namespace) -> Preset:
    """The preset with --set overrides and the CLI's step/time limits; a resumed run keeps its own."""
    saved = args.out / "checkpoint" / "preset.json" if args.out else None
    if args.resume and saved is not None and saved.is_file():
        if args.overrides:
            raise PresetError("--set cannot change the recipe of a resumed run: resume without it")
        data = json.loads(saved.read_text(encoding="utf-8"))
        preset = preset_from_dict(data)
    else:
        preset = load_preset(args.preset, args.overrides)
    if args.time_budget_min is not None:
        preset.train.time_budget_min = args.time_budget_min
    if args.max_steps is not None:
        preset.train.max_steps = args.max_steps
    if preset.train.time_budget_min is None and preset.train.max_steps is None:
        raise PresetError("give --time-budget-min or --max-steps (the preset sets neither)")
    return preset


def run_eval_only(args: argparse.Namespace) -> int:
    """Gate a saved folder: its recipe.json's preset if present, else --preset."""
    folder: Path = args.eval_only
    recipe_path = folder / RECIPE_FILE
    try:
        if recipe_path.is_file():
            preset = preset_from_dict(json.loads(recipe_path.read_text(encoding="utf-8"))["preset"])
        else:
            preset = load_preset(args.preset, args.overrides)
    except PresetError as e:
        print(f"error: {e}", file=sys.stderr)
        return EXIT_USAGE
    from adapters.base import resolve_device

    device = resolve_device(args.device)
    record: dict[str, Any] = {}
    # Never delete weights that were only to be scored.
    passed = run_gate(folder, preset, args.data_dir, device, RunLog(None), record, keep_weights=True)
    (folder / "gate.json").write_text(
        json.dumps(record, indent=2, ensure_ascii=False) + "\n", encoding="utf-8"
    )
    summary = {k: v for k, v in record["scores"].items() if k != "samples"} | {"gate": record["gate"]}
    print(json.dumps(summary, indent=2))
    return EXIT_OK if passed else EXIT_GATE


def main(argv: list[str] | None = None) -> int:
    parser = add_pretrain_arguments(
        argparse.ArgumentParser(prog="python -m training.pretrain", description=__doc__.splitlines()[0])
    )
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s", stream=sys.stderr)
    return run_pretrain(args)


if __name__ == "__main__":
    raise SystemExit(main())
