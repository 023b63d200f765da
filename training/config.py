"""The adapter trainer's configuration: one validated dataclass that serialises to JSON (adapter
metadata) and whose fields are the options of ``inputtune train`` (``adapters.options``: the default,
type and help of an option are written once, on its field)."""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from adapters.config import ACTIVATIONS
from training.common.schedule import SCHEDULES
from training.errors import ConfigError

METHODS: tuple[str, ...] = ("input-tuning", "prompt-tuning", "fine-tuning")
BASE_DTYPES = ("float32", "bfloat16")

_MODEL = "model and output"
_DATA = "data (a built-in task or your own files)"
_ADAPTER = "adapter"
_OPTIM = "optimisation"
_EVAL = "evaluation and early stopping"
_RUN = "checkpoints and time"


def _option(default: Any, group: str, help: str = "", **extra: Any) -> Any:
    """A field with a default whose command-line option goes in ``group`` of ``inputtune train --help``."""
    return field(default=default, metadata={"group": group, "help": help, **extra})


@dataclass
class AdapterTrainConfig:
    """Everything a training run needs besides the data; each field is an ``inputtune train`` option.

    ``max_steps`` wins over ``epochs``; with neither, one epoch. ``warmup_steps`` None is 5% of the steps.
    ``patience`` None keeps the best dev checkpoint but never stops early. ``out`` is an adapter
    ``.safetensors`` file, or a folder for fine-tuning.
    """

    model: str = field(
        metadata={"group": _MODEL, "help": "base model folder (Hugging Face layout, T5 family or GPT-2)"}
    )
    out: str = field(
        metadata={
            "group": _MODEL,
            "help": "adapter file NAME.safetensors (input-/prompt-tuning) or a folder (fine-tuning); the "
            "run also writes OUT.train_log.jsonl and checkpoints in OUT.ckpt/",
        }
    )
    method: str = _option(
        "input-tuning", _MODEL, "an adapter, or fine-tuning of the whole base", choices=METHODS
    )
    task: str | None = _option(
        None, _DATA, "built-in task (training.data.TASKS: e2e, dart, webnlg, overnight, fr-en, ...)"
    )
    train_file: str | None = _option(None, _DATA, "JSONL/CSV with fields 'source' and 'target'")
    dev_file: str | None = _option(None, _DATA, "dev pairs for --eval-every (same format)")
    test_file: str | None = _option(None, _DATA, "test pairs, scored with the best weights at the end")
    eval_test: bool = _option(False, _DATA, "with --task: score the test split at the end")
    data_dir: str | None = _option(
        None, _DATA, "folder of the built-in data (default: $INPUTTUNE_DATA_DIR or ../shared/data)"
    )
    max_source_tokens: int | None = _option(
        512, _DATA, "truncate training sources to this many tokens (EOS kept)"
    )
    max_target_tokens: int | None = _option(
        256, _DATA, "truncate training targets to this many tokens (EOS kept)"
    )
    prompt_length: int = _option(20, _ADAPTER, "soft-prompt tokens P")
    hidden_size: int | None = _option(None, _ADAPTER, "adapter MLP inner size H (default 2 * d_model)")
    activation: str = _option("relu", _ADAPTER, f"one of {', '.join(ACTIVATIONS)}")
    lr_prompt: float = _option(0.3, _OPTIM, "AdamW learning rate of the soft prompt")
    lr_adapter: float = _option(1e-3, _OPTIM, "AdamW learning rate of the MLP")
    lr: float = _option(1e-4, _OPTIM, "learning rate of fine-tuning")
    weight_decay: float = _option(
        0.0, _OPTIM, "AdamW weight decay of weight matrices (never of the prompt, biases, norms)"
    )
    schedule: str = _option("linear", _OPTIM, "decay after warmup", choices=SCHEDULES)
    warmup_steps: int | None = _option(None, _OPTIM, "linear warmup steps (default 5%% of the steps)")
    max_grad_norm: float = _option(1.0, _OPTIM, "clip gradients (0: off)")
    batch_size: int = _option(16, _OPTIM, "rows per micro-batch per process")
    grad_accum: int = _option(1, _OPTIM, "micro-batches per optimiser step")
    max_steps: int | None = _option(None, _OPTIM, "optimiser steps (wins over --epochs)")
    epochs: float | None = _option(
        None, _OPTIM, "passes over the training data (default 1 without --max-steps)"
    )
    bf16: bool = _option(False, _OPTIM, "bf16 autocast (master weights stay float32)")
    dtype: str = _option(
        "float32",
        _OPTIM,
        "dtype of the frozen base's weights (bfloat16 halves its memory; implies --bf16)",
        choices=BASE_DTYPES,
    )
    base_dropout: bool = _option(
        True, _OPTIM, "run the base with its configured dropout while training (--no-base-dropout: without)"
    )
    seed: int = _option(0, _OPTIM)
    device: str = _option("auto", _OPTIM, "auto | cuda | cpu")
    eval_every: int = _option(
        0, _EVAL, "decode the dev subset every N steps, keep the best weights (BLEU, then chrF); 0: never"
    )
    eval_samples: int = _option(200, _EVAL, "dev items per evaluation")
    eval_batch_size: int = _option(32, _EVAL)
    max_new_tokens: int = _option(128, _EVAL, "decoding limit of evaluations")
    patience: int | None = _option(None, _EVAL, "stop after N evaluations without a better dev BLEU")
    save_every: int = _option(0, _RUN, "checkpoint every N steps; 0: never")
    checkpoint_dir: str | None = _option(None, _RUN, "checkpoint folder (default OUT.ckpt)")
    resume: str | None = _option(
        None, _RUN, "checkpoint folder to continue from (same options as the first run)"
    )
    stop_after_steps: int | None = _option(
        None,
        _RUN,
        "stop with a checkpoint after N steps of this session (the schedule still plans "
        "--max-steps): split a run into sessions and --resume it",
    )
    time_budget_min: float | None = _option(
        None, _RUN, "stop cleanly (checkpoint, best weights written) before this many minutes"
    )
    log_every: int = _option(10, _RUN, "log loss and tokens/s every N steps")
    progress: bool = _option(True, _RUN, "show a progress bar (--no-progress: none)")

    def __post_init__(self) -> None:
        errors = []
        if self.method not in METHODS:
            errors.append(f"method {self.method!r} is unknown: use one of {', '.join(METHODS)}")
        if self.schedule not in SCHEDULES:
            errors.append(f"schedule {self.schedule!r} is unknown: use one of {', '.join(SCHEDULES)}")
        if self.activation not in ACTIVATIONS:
            errors.append(f"activation {self.activation!r} is unknown: use one of {', '.join(ACTIVATIONS)}")
        if self.dtype not in BASE_DTYPES:
            errors.append(f"dtype {self.dtype!r} is unknown: use one of {', '.join(BASE_DTYPES)}")
        if self.method == "fine-tuning" and self.dtype != "float32":
            errors.append(
                "fine-tuning keeps float32 master weights: use --dtype float32 (with --bf16 for speed)"
            )
        if self.method != "fine-tuning" and not self.out.endswith(".safetensors"):
            errors.append(f"--out {self.out!r} must be an adapter file ending in .safetensors")
        if self.method == "prompt-tuning" and self.prompt_length < 1:
            errors.append("prompt-tuning with --prompt-length 0 has nothing to train: use a positive length")
        positive = [
            "batch_size",
            "grad_accum",
            "eval_samples",
            "eval_batch_size",
            "max_new_tokens",
            "log_every",
            "max_steps",
            "max_source_tokens",
            "max_target_tokens",
            "patience",
            "stop_after_steps",
        ]
        for name in positive:
            value = getattr(self, name)
            if value is not None and value < 1:
                errors.append(f"{name.replace('_', '-')} must be >= 1, got {value}")
        for name in ("prompt_length", "eval_every", "save_every", "weight_decay", "max_grad_norm"):
            if getattr(self, name) < 0:
                errors.append(f"{name.replace('_', '-')} must be >= 0, got {getattr(self, name)}")
        for name in ("lr_prompt", "lr_adapter", "lr", "epochs", "time_budget_min"):
            value = getattr(self, name)
            if value is not None and value <= 0:
                errors.append(f"{name.replace('_', '-')} must be > 0, got {value}")
        if self.warmup_steps is not None and self.warmup_steps < 0:
            errors.append(f"warmup-steps must be >= 0, got {self.warmup_steps}")
        for name in ("max_source_tokens", "max_target_tokens"):
            value = getattr(self, name)
            if value is not None and value < 2:
                errors.append(f"{name.replace('_', '-')} must be >= 2 (a token and the EOS), got {value}")
        if errors:
            raise ConfigError("; ".join(dict.fromkeys(errors)))

    @property
    def checkpoint_folder(self) -> Path:
        return Path(self.checkpoint_dir) if self.checkpoint_dir else Path(self.out + ".ckpt")

    @property
    def log_path(self) -> Path:
        return Path(str(self.out).rstrip("/") + ".train_log.jsonl")

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), sort_keys=True)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> AdapterTrainConfig:
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ConfigError(f"unknown training config keys {unknown}: known keys are {sorted(known)}")
        return cls(**data)
