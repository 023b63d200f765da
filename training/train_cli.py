"""``inputtune train`` and ``inputtune eval``: argument parsers and runners.

``server/cli.py`` wires ``add_train_arguments``/``run_train`` and ``add_eval_arguments``/``run_eval`` into
the ``inputtune`` command; until then ``python -m training.train_cli train|eval ...`` runs them.
Both runners return an exit code: 0 done, 2 bad input (data, options, model, adapter: the message says
what to fix), 1 the training diverged.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import sys
import time
from pathlib import Path
from typing import Any

from adapters import (
    AdaptedModel,
    AdapterError,
    BaseModelError,
    GenerationParams,
    InputTooLongError,
    load_base,
)
from training.config import BASE_DTYPES, METHODS, SCHEDULES, TrainConfig
from training.data import DataFormatError, DataNotFoundError, EvalItem, Example, load_task, load_user_files
from training.output import FINE_TUNED_METADATA

INPUT_ERRORS = (
    DataFormatError,
    DataNotFoundError,
    AdapterError,
    BaseModelError,
    InputTooLongError,
    ValueError,
    FileNotFoundError,
)
DEFAULTS = {f.name: f.default for f in dataclasses.fields(TrainConfig)}


def _error(message: object) -> int:
    print(f"inputtune: error: {message}", file=sys.stderr)
    return 2


# ---------------------------------------------------------------------------------------------- train


def add_train_arguments(p: argparse.ArgumentParser) -> None:
    d = DEFAULTS
    g = p.add_argument_group("model and output")
    g.add_argument(
        "--model", required=True, help="base model folder (Hugging Face layout, T5 family or GPT-2)"
    )
    g.add_argument("--method", choices=METHODS, default=d["method"])
    g.add_argument(
        "--out",
        required=True,
        help="adapter file NAME.safetensors (input-/prompt-tuning) or a folder (fine-tuning); the "
        "run also writes OUT.train_log.jsonl and checkpoints in OUT.ckpt/",
    )
    g = p.add_argument_group("data (a built-in task or your own files)")
    g.add_argument(
        "--task", help="built-in task (training.data.TASKS: e2e, dart, webnlg, overnight, fr-en, ...)"
    )
    g.add_argument("--train-file", help="JSONL/CSV with fields 'source' and 'target'")
    g.add_argument("--dev-file", help="dev pairs for --eval-every (same format)")
    g.add_argument("--test-file", help="test pairs, scored with the best weights at the end")
    g.add_argument("--eval-test", action="store_true", help="with --task: score the test split at the end")
    g.add_argument(
        "--data-dir", help="folder of the built-in data (default: $INPUTTUNE_DATA_DIR or ../shared/data)"
    )
    g.add_argument(
        "--max-source-tokens",
        type=int,
        default=d["max_source_tokens"],
        help="truncate training sources to this many tokens (EOS kept)",
    )
    g.add_argument(
        "--max-target-tokens",
        type=int,
        default=d["max_target_tokens"],
        help="truncate training targets to this many tokens (EOS kept)",
    )
    g = p.add_argument_group("adapter")
    g.add_argument("--prompt-length", type=int, default=d["prompt_length"], help="soft-prompt tokens P")
    g.add_argument("--hidden-size", type=int, help="adapter MLP inner size H (default 2 * d_model)")
    g.add_argument("--activation", default=d["activation"])
    g = p.add_argument_group("optimisation")
    g.add_argument(
        "--lr-prompt", type=float, default=d["lr_prompt"], help="AdamW learning rate of the soft prompt"
    )
    g.add_argument("--lr-adapter", type=float, default=d["lr_adapter"], help="AdamW learning rate of the MLP")
    g.add_argument("--lr", type=float, default=d["lr"], help="learning rate of fine-tuning")
    g.add_argument(
        "--weight-decay",
        type=float,
        default=d["weight_decay"],
        help="AdamW weight decay of weight matrices (never of the prompt, biases, norms)",
    )
    g.add_argument("--schedule", choices=SCHEDULES, default=d["schedule"], help="decay after warmup")
    g.add_argument("--warmup-steps", type=int, help="linear warmup steps (default 5%% of the steps)")
    g.add_argument("--max-grad-norm", type=float, default=d["max_grad_norm"], help="clip gradients (0: off)")
    g.add_argument("--batch-size", type=int, default=d["batch_size"], help="rows per micro-batch per process")
    g.add_argument("--grad-accum", type=int, default=d["grad_accum"], help="micro-batches per optimiser step")
    g.add_argument("--max-steps", type=int, help="optimiser steps (wins over --epochs)")
    g.add_argument(
        "--epochs", type=float, help="passes over the training data (default 1 without --max-steps)"
    )
    g.add_argument("--bf16", action="store_true", help="bf16 autocast (master weights stay float32)")
    g.add_argument(
        "--dtype",
        choices=BASE_DTYPES,
        default=d["dtype"],
        help="dtype of the frozen base's weights (bfloat16 halves its memory; implies --bf16)",
    )
    g.add_argument(
        "--no-base-dropout",
        dest="base_dropout",
        action="store_false",
        help="run the base without dropout while training (default: its configured dropout)",
    )
    g.add_argument("--seed", type=int, default=d["seed"])
    g.add_argument("--device", default=d["device"], help="auto | cuda | cpu")
    g = p.add_argument_group("evaluation and early stopping")
    g.add_argument(
        "--eval-every",
        type=int,
        default=d["eval_every"],
        help="decode the dev subset every N steps, keep the best weights (BLEU, then chrF); 0: never",
    )
    g.add_argument("--eval-samples", type=int, default=d["eval_samples"], help="dev items per evaluation")
    g.add_argument("--eval-batch-size", type=int, default=d["eval_batch_size"])
    g.add_argument(
        "--max-new-tokens", type=int, default=d["max_new_tokens"], help="decoding limit of evaluations"
    )
    g.add_argument("--patience", type=int, help="stop after N evaluations without a better dev BLEU")
    g = p.add_argument_group("checkpoints and time")
    g.add_argument(
        "--save-every", type=int, default=d["save_every"], help="checkpoint every N steps; 0: never"
    )
    g.add_argument("--checkpoint-dir", help="checkpoint folder (default OUT.ckpt)")
    g.add_argument("--resume", help="checkpoint folder to continue from (same options as the first run)")
    g.add_argument(
        "--stop-after-steps",
        type=int,
        help="stop with a checkpoint after N steps of this session (the schedule still plans "
        "--max-steps): split a run into sessions and --resume it",
    )
    g.add_argument(
        "--time-budget-min",
        type=float,
        help="stop cleanly (checkpoint, best weights written) before this many minutes",
    )
    g.add_argument(
        "--log-every", type=int, default=d["log_every"], help="log loss and tokens/s every N steps"
    )
    g.add_argument("--no-progress", dest="progress", action="store_false", help="no progress bar")


def config_from_args(args: argparse.Namespace) -> TrainConfig:
    return TrainConfig(**{k: v for k, v in vars(args).items() if k in DEFAULTS})


def load_training_data(
    config: TrainConfig,
) -> tuple[list[Example], list[EvalItem] | None, list[EvalItem] | None, str]:
    """(train examples, dev items or None, test items or None, task name) from --task or the files."""
    if bool(config.task) == bool(config.train_file):
        raise ValueError("pass either --task or --train-file (with optional --dev-file/--test-file)")
    want_dev = config.eval_every > 0
    if config.task:
        if config.dev_file or config.test_file:
            raise ValueError("--dev-file/--test-file go with --train-file, not with --task")
        train = load_task(config.task, "train", config.data_dir).examples
        dev = load_task(config.task, "dev", config.data_dir).items if want_dev else None
        test = load_task(config.task, "test", config.data_dir).items if config.eval_test else None
        return train, dev, test, config.task
    assert config.train_file is not None
    train_split = load_user_files(config.train_file, "train")
    dev = load_user_files(config.dev_file, "dev").items if config.dev_file and want_dev else None
    test = load_user_files(config.test_file, "test").items if config.test_file else None
    return train_split.examples, dev, test, train_split.task


def run_train(args: argparse.Namespace) -> int:
    from training.trainer import Trainer, make_accelerator  # torch/accelerate only once the options are fine

    try:
        config = config_from_args(args)
        if config.eval_every and not (config.task or config.dev_file):
            raise ValueError("--eval-every needs dev data: pass --dev-file (or use --task)")
        train, dev, test, task_name = load_training_data(config)
        accelerator = make_accelerator(config.device)
        base = load_base(config.model, device=str(accelerator.device), dtype=config.dtype)
        trainer = Trainer(config, base, train, dev, test, accelerator, task_name)
    except INPUT_ERRORS as e:
        return _error(e)
    try:
        result = trainer.train()
    except FloatingPointError as e:
        print(f"inputtune: error: {e}", file=sys.stderr)
        return 1
    if accelerator.is_main_process:
        best = (
            f", best dev BLEU {result.dev_scores.get('bleu', 0):.2f} at step {result.best_step}"
            if result.best_step is not None
            else ""
        )
        print(
            f"wrote {result.out}: {result.steps} steps ({result.stop_reason}){best}, "
            f"{result.tokens_seen} tokens in {result.wall_time_s:.0f}s; log {result.log_path}"
        )
        if result.test_scores is not None:
            from training.evaluate import format_table

            print(format_table(result.test_scores))
    return 0


# ---------------------------------------------------------------------------------------------- eval


def add_eval_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--model", required=True, help="base model folder (or a fine-tuned model folder)")
    p.add_argument("--adapter", help="adapter .safetensors file; none: the model itself")
    p.add_argument("--task", help="built-in task")
    p.add_argument("--data-file", help="your own JSONL/CSV pairs (instead of --task)")
    p.add_argument("--split", default="test", help="dev | test | a task's extra split (flores, newstest2014)")
    p.add_argument("--data-dir")
    p.add_argument("--num-beams", type=int, default=1)
    p.add_argument("--max-new-tokens", type=int, default=128)
    p.add_argument("--limit", type=int, help="score only the first N distinct sources")
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--out", help="write the JSON report here")
    p.add_argument("--outputs", help="write the outputs here, one line per item")
    p.add_argument("--examples", type=int, default=5, help="example outputs in the report")
    p.add_argument("--device", default="auto", help="auto | cpu | cuda | cuda:N")
    p.add_argument("--dtype", default="auto", help="auto | float32 | bfloat16 | float16 (GPU only)")


def _eval_items(args: argparse.Namespace) -> list[EvalItem]:
    if bool(args.task) == bool(args.data_file):
        raise ValueError("pass either --task (with --split) or --data-file")
    if args.limit is not None and args.limit < 1:
        raise ValueError(f"--limit must be >= 1, got {args.limit}")
    if args.task:
        return load_task(args.task, args.split, args.data_dir, limit=args.limit).items
    return load_user_files(args.data_file, args.split).items[: args.limit]


def run_eval(args: argparse.Namespace) -> int:
    from training.evaluate import evaluate, format_table

    try:
        items = _eval_items(args)
        params = GenerationParams(max_new_tokens=args.max_new_tokens, num_beams=args.num_beams)
        load_start = time.perf_counter()
        model = AdaptedModel.load(args.model, device=args.device, dtype=args.dtype, num_slots=1)
        adapter_info: dict[str, Any] | None = None
        slot = 0
        if args.adapter:
            weights = model.load_adapter_file(1, args.adapter)
            slot = 1
            adapter_info = {
                "path": str(args.adapter),
                "config": weights.config.to_dict(),
                "metadata": weights.metadata,
            }
        load_seconds = time.perf_counter() - load_start
        result = evaluate(model, slot, items, params, args.batch_size, args.examples)
    except INPUT_ERRORS as e:
        return _error(e)
    model_meta = Path(args.model) / FINE_TUNED_METADATA
    report = {
        "scores": result["scores"],
        "signatures": result["signatures"],
        "warnings": result["warnings"],
        "num_items": result["num_items"],
        "settings": {
            "model": args.model,
            "adapter": args.adapter,
            "task": args.task,
            "data_file": args.data_file,
            "split": args.split,
            "limit": args.limit,
            "num_beams": args.num_beams,
            "max_new_tokens": args.max_new_tokens,
            "batch_size": args.batch_size,
            "device": str(model.base.device),
            "dtype": str(model.base.dtype).removeprefix("torch."),
        },
        "adapter": adapter_info,
        "model_metadata": json.loads(model_meta.read_text()) if model_meta.is_file() else None,
        "examples": result["examples"],
        "timing": {
            "load_s": load_seconds,
            "decode_s": result["seconds"],
            "items_per_s": result["items_per_s"],
            "generated_tokens": result["generated_tokens"],
        },
    }
    for warning in result["warnings"]:
        print(f"inputtune: warning: {warning}", file=sys.stderr)
    what = f"{args.task or args.data_file} {args.split}"
    print(f"{what}: {result['num_items']} items, {result['seconds']:.1f}s decoding")
    print(format_table(result["scores"]))
    if args.out:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(json.dumps(report, indent=2, ensure_ascii=False) + "\n")
    if args.outputs:
        Path(args.outputs).write_text("".join(" ".join(h.splitlines()) + "\n" for h in result["hypotheses"]))
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m training.train_cli")
    sub = parser.add_subparsers(dest="command", required=True)
    add_train_arguments(sub.add_parser("train", help="train an adapter (or fine-tune the base)"))
    add_eval_arguments(sub.add_parser("eval", help="decode a split and score it"))
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    return run_train(args) if args.command == "train" else run_eval(args)


if __name__ == "__main__":
    sys.exit(main())
