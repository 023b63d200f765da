"""``inputtune train`` and ``inputtune eval``: argument parsers and runners (``server/cli/main.py``
wires them into the ``inputtune`` command).

The train options are ``AdapterTrainConfig``'s fields and eval's decoding options ``GenerationParams``'
(``adapters.options``): a default, a type or a help text is written once, on its field. The runners
return 0; they raise on bad input (a ``training.errors.TrainingError`` or an ``adapters`` error: data,
options, model, adapter) and on divergence (``TrainingDivergedError``), and ``inputtune`` prints the
message and maps the class to its exit code.

``inputtune --help`` imports every command, and the serving image lacks the training extras
(accelerate, sacrebleu): the trainer and the evaluator are imported inside the runners.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

from adapters import AdaptedModel, GenerationParams, load_base
from adapters.options import add_dataclass_options, dataclass_from_args
from training.config import AdapterTrainConfig
from training.data import EvalItem, Example, load_task, load_user_files
from training.errors import ConfigError
from training.output import FINE_TUNED_METADATA

EVAL_DECODING = ("num_beams", "max_new_tokens")  # the GenerationParams fields `inputtune eval` takes

# ---------------------------------------------------------------------------------------------- train


def add_train_arguments(parser: argparse.ArgumentParser) -> None:
    add_dataclass_options(parser, AdapterTrainConfig)


def load_training_data(
    config: AdapterTrainConfig,
) -> tuple[list[Example], list[EvalItem] | None, list[EvalItem] | None, str]:
    """(train examples, dev items or None, test items or None, task name) from --task or the files."""
    if config.eval_every and not (config.task or config.dev_file):
        raise ConfigError("--eval-every needs dev data: pass --dev-file (or use --task)")
    if bool(config.task) == bool(config.train_file):
        raise ConfigError("pass either --task or --train-file (with optional --dev-file/--test-file)")
    want_dev = config.eval_every > 0
    if config.task:
        if config.dev_file or config.test_file:
            raise ConfigError("--dev-file/--test-file go with --train-file, not with --task")
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
    from training.common.device import make_accelerator
    from training.evaluate import format_table
    from training.trainer import Trainer

    config: AdapterTrainConfig = dataclass_from_args(AdapterTrainConfig, args)
    train, dev, test, task_name = load_training_data(config)
    accelerator = make_accelerator(config.device)
    base = load_base(config.model, device=str(accelerator.device), dtype=config.dtype)
    result = Trainer(config, base, train, dev, test, accelerator, task_name).train()
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
    add_dataclass_options(p, GenerationParams, only=EVAL_DECODING, defaults={"max_new_tokens": 128})
    p.add_argument("--limit", type=int, help="score only the first N distinct sources")
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--out", help="write the JSON report here")
    p.add_argument("--outputs", help="write the outputs here, one line per item")
    p.add_argument("--examples", type=int, default=5, help="example outputs in the report")
    p.add_argument("--device", default="auto", help="auto | cpu | cuda | cuda:N")
    p.add_argument("--dtype", default="auto", help="auto | float32 | bfloat16 | float16 (GPU only)")


def _eval_items(args: argparse.Namespace) -> list[EvalItem]:
    if bool(args.task) == bool(args.data_file):
        raise ConfigError("pass either --task (with --split) or --data-file")
    if args.limit is not None and args.limit < 1:
        raise ConfigError(f"--limit must be >= 1, got {args.limit}")
    if args.task:
        return load_task(args.task, args.split, args.data_dir, limit=args.limit).items
    return load_user_files(args.data_file, args.split).items[: args.limit]


def run_eval(args: argparse.Namespace) -> int:
    from training.evaluate import evaluate, format_table

    items = _eval_items(args)
    params = GenerationParams(**{name: getattr(args, name) for name in EVAL_DECODING})
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
