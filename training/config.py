"""The training configuration: one validated dataclass that serialises to JSON (adapter metadata)."""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from adapters.config import ACTIVATIONS

METHODS: tuple[str, ...] = ("input-tuning", "prompt-tuning", "fine-tuning")
SCHEDULES = ("linear", "cosine", "constant")
BASE_DTYPES = ("float32", "bfloat16")


@dataclass
class TrainConfig:
    """Everything a training run needs besides the data; see ``add_train_arguments`` for each option.

    ``max_steps`` wins over ``epochs``; with neither, one epoch. ``warmup_steps`` None is 5% of the steps.
    ``patience`` None keeps the best dev checkpoint but never stops early. ``out`` is an adapter
    ``.safetensors`` file, or a folder for fine-tuning.
    """

    model: str
    out: str
    method: str = "input-tuning"  # one of METHODS, checked below
    task: str | None = None
    train_file: str | None = None
    dev_file: str | None = None
    test_file: str | None = None
    data_dir: str | None = None
    eval_test: bool = False
    prompt_length: int = 20
    hidden_size: int | None = None
    activation: str = "relu"
    lr_prompt: float = 0.3
    lr_adapter: float = 1e-3
    lr: float = 1e-4
    weight_decay: float = 0.0
    schedule: str = "linear"
    warmup_steps: int | None = None
    max_grad_norm: float = 1.0
    batch_size: int = 16
    grad_accum: int = 1
    max_steps: int | None = None
    epochs: float | None = None
    max_source_tokens: int | None = 512
    max_target_tokens: int | None = 256
    bf16: bool = False
    dtype: str = "float32"
    base_dropout: bool = True
    eval_every: int = 0
    eval_samples: int = 200
    eval_batch_size: int = 32
    max_new_tokens: int = 128
    patience: int | None = None
    save_every: int = 0
    checkpoint_dir: str | None = None
    resume: str | None = None
    stop_after_steps: int | None = None
    time_budget_min: float | None = None
    log_every: int = 10
    seed: int = 0
    device: str = "auto"
    progress: bool = True

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
            raise ValueError("; ".join(dict.fromkeys(errors)))

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
    def from_dict(cls, data: dict[str, Any]) -> TrainConfig:
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ValueError(f"unknown training config keys {unknown}: known keys are {sorted(known)}")
        return cls(**data)
