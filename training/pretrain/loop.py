"""The pretraining loop: optimizer steps over the mixture stream until the budget planner stops, with
logging (pretrain_log.jsonl, a tqdm bar), periodic checkpoints and a checkpoint on Ctrl-C.

Checkpoints are ``training.common.checkpoint``'s format: ``OUT/checkpoint/state.pt`` (model, optimizer,
RNG, step, counters, planner) with the run's ``preset.json`` next to it.

The device is synchronised only where the planner needs a timing, at log steps (one `.item()`-like
read of the accumulated losses) and at checkpoints; every other step only queues work.
"""

from __future__ import annotations

import json
import logging
import os
import platform
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from training.common.checkpoint import load_checkpoint, restore_rng, rng_state, save_checkpoint
from training.common.schedule import lr_factor
from training.pretrain.budget import BudgetPlanner
from training.pretrain.config import PretrainTrainConfig
from training.pretrain.mixture import MixtureStream
from training.pretrain.model import train_step

log = logging.getLogger("training.pretrain")

PRESET_FILE = "preset.json"  # the run's recipe, next to state.pt: a resumed run keeps it


def restore_checkpoint(
    folder: Path, model: torch.nn.Module, optimizer: torch.optim.Optimizer
) -> dict[str, Any]:
    """Restore model, optimizer and RNG states in place from ``TrainLoop.checkpoint``'s folder; returns
    the rest (step, counters, planner)."""
    state = load_checkpoint(folder, "run without --resume to start afresh")
    model.load_state_dict(state.pop("model"))
    optimizer.load_state_dict(state.pop("optimizer"))
    restore_rng(state.pop("rng"))
    return state


class RunLog:
    """Appends one JSON object per event to pretrain_log.jsonl and mirrors it to the logger."""

    def __init__(self, path: Path | None) -> None:
        self.path = path
        self.started = time.perf_counter()

    def __call__(self, event: str, **fields: Any) -> None:
        record = {"event": event, "t": round(time.perf_counter() - self.started, 2), **fields}
        if self.path is not None:
            with self.path.open("a", encoding="utf-8") as f:
                f.write(json.dumps(record, ensure_ascii=False) + "\n")
        level = logging.ERROR if event.endswith("failed") else logging.INFO
        log.log(level, "%s %s", event, json.dumps(fields, ensure_ascii=False)[:400])


def hardware(device: torch.device) -> dict[str, Any]:
    """What ran the job, for the recipe."""
    import tokenizers
    import transformers

    info: dict[str, Any] = {
        "device": str(device),
        "cpu_count": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "transformers": transformers.__version__,
        "tokenizers": tokenizers.__version__,
        "platform": platform.platform(),
    }
    if device.type == "cuda":
        info["gpu"] = torch.cuda.get_device_name(device)
        info["autocast"] = "bfloat16"
    return info


@dataclass
class Counters:
    """Running totals, kept in checkpoints so a resumed run reports the whole training."""

    tokens: int = 0  # non-padding encoder + decoder tokens
    padded_tokens: int = 0
    per_source_tokens: dict[str, int] = field(default_factory=dict)
    train_s: float = 0.0


@dataclass
class TrainLoop:
    """Everything one training loop touches. `forward` is `model` or its torch.compile wrapper."""

    model: torch.nn.Module
    forward: torch.nn.Module
    optimizer: torch.optim.Optimizer
    stream: MixtureStream
    planner: BudgetPlanner
    train: PretrainTrainConfig
    device: torch.device
    checkpoint_dir: Path
    runlog: RunLog
    preset_dict: dict[str, Any]
    counters: Counters = field(default_factory=Counters)
    stop_at_step: int | None = None
    progress: bool = True

    def _sync(self) -> None:
        if self.device.type == "cuda":
            torch.cuda.synchronize()

    def checkpoint(self, step: int) -> None:
        """Write OUT/checkpoint: model, optimizer, RNG, step, counters, planner and the preset."""
        self._sync()
        state = {
            "model": self.model.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "rng": rng_state(),
            "step": step,
            "counters": self.counters.__dict__.copy(),
            "planner": self.planner.state.__dict__.copy() | {"spent_s": self.planner.elapsed_s()},
        }
        files = {PRESET_FILE: json.dumps(self.preset_dict, indent=2) + "\n"}
        save_checkpoint(self.checkpoint_dir, state, files=files)
        self.runlog("checkpoint", step=step)

    def run(self, step: int) -> tuple[int, bool]:
        """Optimizer steps from `step` until the planner stops; returns (steps done, interrupted)."""
        from tqdm import tqdm

        train, planner, counters = self.train, self.planner, self.counters
        bar = tqdm(
            total=planner.total_steps or 0,
            initial=step,
            disable=not self.progress,
            unit="step",
            dynamic_ncols=True,
            file=sys.stderr,
        )
        self.forward.train()
        window_start, window_tokens = time.perf_counter(), 0
        window_sums: dict[str, torch.Tensor] = {}  # summed token losses, on the device
        window_targets: dict[str, int] = {}
        last_checkpoint = loop_start = time.perf_counter()
        train_s_before = counters.train_s
        interrupted = False
        try:
            while not planner.should_stop(step):
                if self.stop_at_step is not None and step >= self.stop_at_step:
                    counters.train_s = train_s_before + time.perf_counter() - loop_start
                    self.checkpoint(step)
                    break
                batches = self.stream.step_batches(step)
                lr = train.lr * lr_factor(
                    step,
                    train.warmup_steps,
                    planner.schedule_total(step),
                    train.final_lr_fraction,
                    train.schedule,
                )
                for group in self.optimizer.param_groups:
                    group["lr"] = lr
                sums = train_step(self.forward, batches, self.device)
                torch.nn.utils.clip_grad_norm_(self.model.parameters(), train.grad_clip)
                self.optimizer.step()
                self.optimizer.zero_grad(set_to_none=True)
                step += 1
                for batch in batches:
                    tokens = batch.tokens
                    counters.tokens += tokens
                    counters.padded_tokens += batch.input_ids.size + batch.labels.size
                    counters.per_source_tokens[batch.source] = (
                        counters.per_source_tokens.get(batch.source, 0) + tokens
                    )
                    window_tokens += tokens
                    window_targets[batch.source] = window_targets.get(batch.source, 0) + batch.target_tokens
                    previous = window_sums.get(batch.source)
                    window_sums[batch.source] = (
                        sums[batch.source] if previous is None else previous + sums[batch.source]
                    )
                if planner.needs_sync(step):
                    self._sync()
                planner.after_step(step)
                if planner.total_steps is not None and bar.total != planner.total_steps:
                    bar.total = planner.total_steps
                    bar.refresh()
                bar.update(1)
                if step % train.log_every == 0 or planner.should_stop(step):
                    losses = {k: float(v) / window_targets[k] for k, v in window_sums.items()}  # host sync
                    now = time.perf_counter()
                    rate = window_tokens / max(1e-9, now - window_start)
                    loss = sum(losses[k] * window_targets[k] for k in losses) / max(
                        1, sum(window_targets.values())
                    )
                    bar.set_postfix(loss=f"{loss:.3f}", tok_s=f"{rate:,.0f}")
                    self.runlog(
                        "step",
                        step=step,
                        loss=round(loss, 4),
                        lr=lr,
                        tokens_per_s=round(rate),
                        tokens=counters.tokens,
                        planned_total=planner.total_steps,
                        elapsed_s=round(planner.elapsed_s(), 1),
                        **{f"loss_{k}": round(v, 4) for k, v in losses.items()},
                    )
                    window_start, window_tokens, window_sums, window_targets = now, 0, {}, {}
                due = (train.checkpoint_every_steps and step % train.checkpoint_every_steps == 0) or (
                    train.checkpoint_every_min
                    and time.perf_counter() - last_checkpoint > train.checkpoint_every_min * 60
                )
                if due and not planner.should_stop(step):
                    counters.train_s = train_s_before + time.perf_counter() - loop_start
                    self.checkpoint(step)
                    last_checkpoint = time.perf_counter()
        except KeyboardInterrupt:
            interrupted = True
            counters.train_s = train_s_before + time.perf_counter() - loop_start
            self.checkpoint(step)
        finally:
            bar.close()
        self._sync()
        counters.train_s = train_s_before + time.perf_counter() - loop_start
        return step, interrupted
