"""One training loop for input-tuning, prompt-tuning and full fine-tuning on T5 or GPT-2 bases.

Loop library: ``accelerate``, used thinly. ``Accelerator`` picks the device, initialises the process
group and wraps the module in DDP when started by ``accelerate launch`` or ``torchrun`` (no code
change for multi-GPU), and gives ``no_sync``/``backward``/main-process helpers. Three things are done
by hand because accelerate's versions fit worse here:
- mixed precision is ``torch.autocast(bf16)`` (``training.common.precision``): accelerate fixes the
  precision once per process (``AcceleratorState``), and tests and the evaluator run several trainings
  in one process;
- gradient accumulation normalises by the target tokens of the whole optimiser step (over micro-batches
  and processes), not by the mean of per-micro-batch means, so short and long batches weigh right;
- data order and sharding: micro-batch ``step * accum * world + j`` goes to process ``j % world``; the
  order is a function of (seed, step), so resuming needs no data-loader state.
Checkpoints are our own (``training.common.checkpoint``): ``accelerator.save_state`` would save the
whole frozen base with every adapter checkpoint.

What trains, and everything else that depends on the method, is a ``training.trainables.Trainable``;
this module is the loop. The forward is ``training.forward.TrainModule``: the serving layout of
``adapters.AdaptedModel``. Dev evaluations decode through ``AdaptedModel.generate`` with the adapter in
a bank slot (what is evaluated is what is served); the weights of the best dev score
(``training.selection``) are kept and written to ``--out`` whenever they improve.

Shapes: B batch rows, P prompt tokens, D model width, H adapter inner size.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import logging
import math
import random
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from accelerate import Accelerator
from accelerate.utils import broadcast_object_list
from tqdm.auto import tqdm

from adapters import AdaptedModel, BaseModel, GenerationParams
from training.batching import BatchStream, collate, tokenize_examples
from training.common.checkpoint import load_checkpoint, restore_rng, rng_state, save_checkpoint
from training.common.device import make_accelerator, same_device
from training.common.precision import bf16_autocast
from training.common.schedule import lr_factor
from training.config import AdapterTrainConfig
from training.data import EvalItem, Example
from training.errors import CheckpointError, ConfigError, TrainingDivergedError
from training.evaluate import evaluate
from training.forward import TrainModule
from training.selection import Selection
from training.trainables import make_trainable

log = logging.getLogger(__name__)

RESUME_HINT = "--resume takes the checkpoint folder a run writes (<out>.ckpt by default, see --save-every)"


@dataclass
class Progress(Selection):
    """Bookkeeping that a checkpoint carries (JSON-serialisable): the dev selection and the counters."""

    step: int = 0
    tokens_seen: int = 0
    wall_time_s: float = 0.0  # earlier sessions of a resumed run
    last_eval_step: int | None = None
    last_eval_seconds: float = 0.0
    history: list[dict[str, Any]] = field(default_factory=list)  # every dev evaluation's scores


@dataclass
class _Window:
    """Loss and token counts since the last log line; the loss stays on the device until then."""

    loss: torch.Tensor
    targets: int = 0
    tokens: int = 0
    start: float = field(default_factory=time.perf_counter)

    def add(self, loss: torch.Tensor, targets: int, tokens: int) -> None:
        self.loss += loss
        self.targets += targets
        self.tokens += tokens

    def reset(self) -> None:
        self.loss = torch.zeros_like(self.loss)
        self.targets = self.tokens = 0
        self.start = time.perf_counter()


@dataclass
class TrainResult:
    out: Path
    steps: int
    stop_reason: str  # max_steps | early_stopping | time_budget | stop_after_steps
    best_step: int | None
    dev_scores: dict[str, Any]
    test_scores: dict[str, Any] | None
    wall_time_s: float
    tokens_seen: int
    log_path: Path


class Trainer:
    """Trains one adapter (or fine-tunes the base) on (source, target) pairs.

    base: loaded on ``accelerator.device`` (frozen by ``load_base``/``wrap_base``; fine-tuning unfreezes it).
    train_examples: training pairs; dev_items / test_items: evaluation items (multi-reference) or None.
    """

    def __init__(
        self,
        config: AdapterTrainConfig,
        base: BaseModel,
        train_examples: Sequence[Example],
        dev_items: Sequence[EvalItem] | None = None,
        test_items: Sequence[EvalItem] | None = None,
        accelerator: Accelerator | None = None,
        task_name: str = "",
    ) -> None:
        self.config = cfg = config
        self.accelerator = acc = accelerator or make_accelerator(cfg.device)
        if not same_device(base.device, acc.device):
            raise ConfigError(
                f"the base is on {base.device} but training runs on {acc.device}: load it there"
            )
        self.base, self.task_name = base, task_name
        torch.manual_seed(cfg.seed)
        self.adapted = AdaptedModel(base, num_slots=1)
        self.trainable = make_trainable(cfg, base, acc.device)
        self.data = tokenize_examples(
            self.adapted,
            train_examples,
            cfg.max_source_tokens,
            cfg.max_target_tokens,
            self.trainable.prompt_length,
        )
        if self.data.dropped:
            log.warning(
                "dropped %d training pairs longer than the model's %s positions",
                self.data.dropped,
                base.max_positions,
            )
        self.target_tokens = [len(t) for t in self.data.targets]
        self.all_tokens = self.data.lengths()
        self.stream = BatchStream(self.all_tokens, cfg.batch_size, cfg.seed)
        self.dev_items = self._dev_subset(dev_items)
        self.test_items = list(test_items) if test_items else None
        self.world, self.rank = acc.num_processes, acc.process_index
        self.micro_per_step = cfg.grad_accum * self.world
        self.total_steps = cfg.max_steps or max(
            1, math.ceil((cfg.epochs or 1.0) * self.stream.batches_per_epoch / self.micro_per_step)
        )
        self.module = TrainModule(base.model, self.adapted.is_encoder_decoder, self.trainable.adapter)
        self.optimizer = torch.optim.AdamW(self.trainable.param_groups(), weight_decay=0.0)
        warmup = cfg.warmup_steps if cfg.warmup_steps is not None else round(0.05 * self.total_steps)
        self.scheduler = torch.optim.lr_scheduler.LambdaLR(
            self.optimizer,
            lambda s: lr_factor(s, warmup=warmup, total=self.total_steps, schedule=cfg.schedule),
        )
        self.model = acc.prepare(self.module)
        self.bf16 = cfg.bf16 or base.dtype == torch.bfloat16  # a bf16 base's matmuls need autocast
        self.progress = Progress()
        self.best: dict[str, torch.Tensor] | None = None  # best trainable state so far (CPU)
        self.metric_warnings: set[str] = set()
        if cfg.resume:
            self._resume(cfg.resume)
        elif acc.is_main_process:
            cfg.log_path.parent.mkdir(parents=True, exist_ok=True)
            cfg.log_path.write_text("")

    # ------------------------------------------------------------------ set-up

    def _dev_subset(self, items: Sequence[EvalItem] | None) -> list[EvalItem] | None:
        if not items or not self.config.eval_every:
            return None
        items = list(items)
        if len(items) <= self.config.eval_samples:
            return items
        keep = sorted(random.Random(self.config.seed).sample(range(len(items)), self.config.eval_samples))
        return [items[i] for i in keep]

    # ------------------------------------------------------------------ loop

    def train(self) -> TrainResult:
        cfg, acc = self.config, self.accelerator
        self.base.model.train(cfg.base_dropout)
        self._session_start = time.perf_counter()
        session_steps = 0
        reason = "max_steps"
        bar = tqdm(
            total=self.total_steps,
            initial=self.progress.step,
            desc=cfg.method,
            unit="step",
            disable=not (cfg.progress and acc.is_main_process),
            dynamic_ncols=True,
        )
        window = _Window(torch.zeros((), device=acc.device))
        while self.progress.step < self.total_steps:
            if cfg.stop_after_steps is not None and session_steps >= cfg.stop_after_steps:
                reason = "stop_after_steps"
                break
            if self._agree(self._over_budget()):
                reason = "time_budget"
                break
            loss_sum, targets, tokens = self._train_step()
            window.add(loss_sum, targets, tokens)
            self.progress.step += 1
            self.progress.tokens_seen += tokens
            session_steps += 1
            bar.update(1)
            step = self.progress.step
            if step % cfg.log_every == 0 or step == self.total_steps:
                self._log_window(window, bar)
            if self.dev_items is not None and step % cfg.eval_every == 0:
                if self._dev_eval():
                    reason = "early_stopping"
                    break
                window.start = time.perf_counter()  # tokens/s leaves evaluation time out
            if cfg.save_every and step % cfg.save_every == 0:
                self.save_checkpoint()
        bar.close()
        if reason in ("stop_after_steps", "time_budget") or cfg.save_every:
            self.save_checkpoint()
        return self._finish(reason)

    def _over_budget(self) -> bool:
        if self.config.time_budget_min is None:
            return False
        reserve = self.progress.last_eval_seconds if self.dev_items is not None else 0.0
        return self.wall_time() + reserve >= 60.0 * self.config.time_budget_min

    def _agree(self, flag: bool) -> bool:
        """The main process's decision, on every process (a no-op on one process)."""
        if self.world == 1:
            return flag
        box = [flag]
        broadcast_object_list(box, from_process=0)
        return bool(box[0])

    def wall_time(self) -> float:
        return self.progress.wall_time_s + time.perf_counter() - self._session_start

    def _train_step(self) -> tuple[torch.Tensor, int, int]:
        """One optimiser step over grad_accum micro-batches on each process.

        Returns this process's summed token loss (a device tensor: no host sync), its target tokens and
        the tokens (source + target) of the step over all processes.
        """
        acc, cfg = self.accelerator, self.config
        first = self.progress.step * self.micro_per_step
        micro = [self.stream.batch(first + j) for j in range(self.micro_per_step)]
        step_targets = sum(self.target_tokens[i] for ix in micro for i in ix)
        step_tokens = sum(self.all_tokens[i] for ix in micro for i in ix)
        mine = micro[self.rank :: self.world]
        scale = self.world / step_targets  # DDP averages gradients over processes
        total = torch.zeros((), device=acc.device)
        my_targets = 0
        tokenizer: Any = self.base.tokenizer
        pad_id = tokenizer.pad_token_id
        for i, indices in enumerate(mine):
            batch = collate(
                self.data, indices, pad_id, self.adapted.is_encoder_decoder, pin=acc.device.type == "cuda"
            )
            batch = batch.to(acc.device)
            last = i == len(mine) - 1
            with acc.no_sync(self.model) if not last else contextlib.nullcontext():
                with bf16_autocast(acc.device, self.bf16, cuda_only=False):
                    loss_sum, _ = self.model(*batch.tensors())
                acc.backward(loss_sum * scale)
            total += loss_sum.detach()
            my_targets += batch.num_target_tokens
        if cfg.max_grad_norm:
            torch.nn.utils.clip_grad_norm_(self.trainable.module.parameters(), cfg.max_grad_norm)
        self.optimizer.step()
        self.scheduler.step()
        self.optimizer.zero_grad(set_to_none=True)
        return total, my_targets, step_tokens

    def _log_window(self, window: _Window, bar) -> None:
        loss = float(window.loss) / max(1, window.targets)  # the one host sync, every log_every steps
        if not math.isfinite(loss):
            raise TrainingDivergedError(
                f"training diverged at step {self.progress.step} (loss {loss}): lower the learning rates "
                "(--lr-prompt, --lr-adapter, --lr) or resume from an earlier checkpoint"
            )
        seconds = time.perf_counter() - window.start
        tokens_per_s = window.tokens / seconds if seconds > 0 else 0.0
        lrs = {g["name"]: g["lr"] for g in self.optimizer.param_groups}
        self._log(
            {
                "step": self.progress.step,
                "loss": loss,
                "lr": lrs,
                "tokens_per_s": tokens_per_s,
                "tokens_seen": self.progress.tokens_seen,
                "elapsed_s": self.wall_time(),
            }
        )
        bar.set_postfix(loss=f"{loss:.4f}", tok_s=f"{tokens_per_s:.0f}")
        window.reset()

    def _log(self, record: dict[str, Any]) -> None:
        if self.accelerator.is_main_process:
            with self.config.log_path.open("a") as f:
                f.write(json.dumps(record) + "\n")

    # ------------------------------------------------------------------ evaluation

    def _generation_params(self) -> GenerationParams:
        return GenerationParams(max_new_tokens=self.config.max_new_tokens)

    def _decode_eval(self, items: Sequence[EvalItem]) -> dict[str, Any]:
        """Evaluate the current weights through the serving path (the trainable's bank slot)."""
        self.base.model.eval()
        try:
            slot = self.trainable.eval_slot(self.adapted)
            return evaluate(self.adapted, slot, items, self._generation_params(), self.config.eval_batch_size)
        finally:
            self.base.model.train(self.config.base_dropout)

    def _dev_eval(self) -> bool:
        """Score the dev subset, keep the best weights; True when early stopping says stop."""
        acc, prog, cfg = self.accelerator, self.progress, self.config
        assert self.dev_items is not None, "dev evaluation without dev items"
        stop = False
        if acc.is_main_process:
            result = self._decode_eval(self.dev_items)
            for warning in set(result["warnings"]) - self.metric_warnings:
                log.warning(warning)
                self.metric_warnings.add(warning)
            scores = result["scores"]
            prog.last_eval_step, prog.last_eval_seconds = prog.step, result["seconds"]
            if prog.record(prog.step, scores):
                self.best = self.trainable.state_dict()
                self._write_output(self.best)
            prog.history.append({"step": prog.step, **scores})
            self._log(
                {
                    "step": prog.step,
                    "dev": scores,
                    "best_step": prog.best_step,
                    "eval_seconds": result["seconds"],
                    "example": result["examples"][:1],
                }
            )
            log.info(
                "step %d dev BLEU %.2f chrF %.2f (best BLEU %.2f at step %s)",
                prog.step,
                scores["bleu"],
                scores["chrf"],
                prog.best_scores["bleu"],
                prog.best_step,
            )
            stop = prog.should_stop(cfg.patience)
        acc.wait_for_everyone()
        return self._agree(stop)

    # ------------------------------------------------------------------ output

    def metadata(self, stop_reason: str = "", test_scores: dict | None = None) -> dict[str, str]:
        prog = self.progress
        meta = {
            "task": self.task_name,
            "method": self.config.method,
            "steps": str(prog.step),
            "best_step": "" if prog.best_step is None else str(prog.best_step),
            "dev_scores": json.dumps(prog.best_scores, sort_keys=True),
            "dev_history": json.dumps(prog.history),
            "training_args": self.config.to_json(),
            "wall_time_s": f"{self.wall_time():.1f}",
            "tokens_seen": str(prog.tokens_seen),
            "train_examples": str(len(self.data)),
            "stop_reason": stop_reason,
        }
        if test_scores is not None:
            meta["test_scores"] = json.dumps(test_scores, sort_keys=True)
        return meta

    def _write_output(
        self, state: dict[str, torch.Tensor], stop_reason: str = "", test_scores: dict | None = None
    ) -> None:
        """Write ``state`` (the trainable's CPU state dict) where --out says, with the training facts."""
        self.trainable.write(state, self.metadata(stop_reason, test_scores))

    def _finish(self, reason: str) -> TrainResult:
        acc, prog = self.accelerator, self.progress
        if (
            self.dev_items is not None
            and reason in ("max_steps", "time_budget")
            and prog.last_eval_step != prog.step
        ):
            self._dev_eval()  # the last weights get their chance to be the best
        test_scores = None
        if acc.is_main_process:
            final = self.best if self.best is not None else self.trainable.state_dict()
            if self.test_items:
                self.trainable.load_state_dict(final)
                test_scores = self._decode_eval(self.test_items)["scores"]
                self._log(
                    {"step": prog.step, "test": test_scores, "weights_of_step": prog.best_step or prog.step}
                )
            self._write_output(final, reason, test_scores)
        acc.wait_for_everyone()
        return TrainResult(
            Path(self.config.out),
            prog.step,
            reason,
            prog.best_step,
            prog.best_scores,
            test_scores,
            self.wall_time(),
            prog.tokens_seen,
            self.config.log_path,
        )

    # ------------------------------------------------------------------ checkpoints

    def save_checkpoint(self) -> Path | None:
        """Write the checkpoint folder: the trainable state (the adapter's tensors, or the whole model for
        fine-tuning), the optimiser, the scheduler, the progress (step, early stopping), the RNG states
        (dropout) and what the trainable keeps of the best weights. The data order needs no state: it
        is a function of the seed and the step."""
        folder = self.config.checkpoint_folder
        if self.accelerator.is_main_process:
            progress = dataclasses.replace(self.progress, wall_time_s=self.wall_time())
            save_checkpoint(
                folder,
                {
                    "method": self.config.method,
                    "fingerprint": self.base.fingerprint,
                    "total_steps": self.total_steps,
                    "config": self.config.to_json(),
                    "progress": json.dumps(dataclasses.asdict(progress)),
                    "trainable": self.trainable.state_dict(),
                    "best": self.trainable.checkpoint_best(self.best),
                    "optimizer": self.optimizer.state_dict(),
                    "scheduler": self.scheduler.state_dict(),
                    "rng": rng_state(),
                },
            )
            log.info("checkpoint at step %d in %s", self.progress.step, folder)
        self.accelerator.wait_for_everyone()
        return folder

    def _resume(self, folder: str) -> None:
        state = load_checkpoint(folder, RESUME_HINT)
        if state["method"] != self.config.method:
            raise CheckpointError(f"checkpoint {folder} is for {state['method']}, not {self.config.method}")
        if state["fingerprint"] != self.base.fingerprint:
            raise CheckpointError(
                f"checkpoint {folder} was made on another base model (fingerprint "
                f"{state['fingerprint']}, this base is {self.base.fingerprint}): pass its --model"
            )
        if state["total_steps"] != self.total_steps:
            log.warning(
                "the checkpoint planned %d steps, this run %d: the LR schedule changes",
                state["total_steps"],
                self.total_steps,
            )
        self.trainable.load_state_dict(state["trainable"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])
        self.progress = Progress(**json.loads(state["progress"]))
        self.best = self.trainable.resumed_best(state["best"], self.progress.best_step is not None)
        restore_rng(state["rng"])
        log.info("resumed from %s at step %d", folder, self.progress.step)
