"""What trains: an adapter in front of the frozen base (input-/prompt-tuning), or the whole base
(fine-tuning).

The trainer runs one loop for every method; what depends on the method is here, behind the one
interface of ``Trainable``: the module whose parameters train and its optimiser groups, its CPU state,
the bank slot a dev evaluation decodes from, what ``--out`` receives, and what a checkpoint keeps of
the best weights so far. ``make_trainable`` is the one place that looks at the method.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from pathlib import Path
from typing import Any

import torch

from adapters import AdaptedModel, AdapterConfig, BaseModel, init_adapter, save_adapter
from adapters.module import InputAdapter
from training.common.checkpoint import cpu_state_dict
from training.config import AdapterTrainConfig
from training.output import adapter_weights, save_fine_tuned

State = dict[str, torch.Tensor]


class Trainable(ABC):
    """The trainable part of a run. ``module`` holds the parameters that train; ``adapter`` is what
    ``training.forward.TrainModule`` puts in front of the base (None: the base reads the tokens as they
    are); ``prompt_length`` is the soft-prompt positions each row gets (decoder-only rows must fit them).
    """

    module: torch.nn.Module
    adapter: InputAdapter | None
    prompt_length: int

    def __init__(self, config: AdapterTrainConfig, base: BaseModel) -> None:
        self.config, self.base = config, base

    @abstractmethod
    def param_groups(self) -> list[dict[str, Any]]:
        """AdamW parameter groups, each with its learning rate, weight decay and a ``name`` for the log."""

    def state_dict(self) -> State:
        """A CPU copy of the trainable weights."""
        return cpu_state_dict(self.module)

    def load_state_dict(self, state: State) -> None:
        self.module.load_state_dict(state)

    @abstractmethod
    def eval_slot(self, adapted: AdaptedModel) -> int:
        """Make the current weights servable in ``adapted``; returns the bank slot to decode with."""

    @abstractmethod
    def write(self, state: State, metadata: dict[str, str]) -> None:
        """Write ``state`` (a ``state_dict``) where ``--out`` says, with the training facts."""

    @abstractmethod
    def checkpoint_best(self, best: State | None) -> State | None:
        """What a checkpoint stores of the best weights so far."""

    @abstractmethod
    def resumed_best(self, stored: State | None, has_best: bool) -> State | None:
        """The best weights so far of a resumed run, from what ``checkpoint_best`` stored."""


class AdapterTrainable(Trainable):
    """Input-tuning and prompt-tuning: one ``InputAdapter`` with float32 master weights (whatever the
    base's dtype) trains; the base stays frozen. Dev evaluations load it into bank slot 1, so what is
    evaluated is what is served."""

    adapter: InputAdapter

    def __init__(self, config: AdapterTrainConfig, base: BaseModel, device: torch.device) -> None:
        super().__init__(config, base)
        frozen = not any(p.requires_grad for p in base.model.parameters())
        assert frozen, "the base model must be frozen for adapter training (load it with load_base/wrap_base)"
        weight: torch.Tensor = base.model.get_input_embeddings().weight  # type: ignore[assignment]
        gen = torch.Generator().manual_seed(config.seed)
        self.adapter = InputAdapter(init_adapter(self.adapter_config(), weight, gen)).to(device)
        self.module = self.adapter
        self.prompt_length = config.prompt_length

    def adapter_config(self) -> AdapterConfig:
        cfg = self.config
        return AdapterConfig(
            kind=cfg.method,  # type: ignore[arg-type]
            d_model=self.base.d_model,
            prompt_length=cfg.prompt_length,
            hidden_size=cfg.hidden_size if cfg.method == "input-tuning" else None,
            activation=cfg.activation,
            base_model=self.base.name,
            base_fingerprint=self.base.fingerprint,
        )

    def param_groups(self) -> list[dict[str, Any]]:
        cfg, a = self.config, self.adapter
        groups: list[dict[str, Any]] = []
        if cfg.prompt_length:
            groups.append({"params": [a.prompt], "lr": cfg.lr_prompt, "name": "prompt"})
        if a.config.has_mlp:
            groups.append(
                {
                    "params": [a.w1, a.w2],
                    "lr": cfg.lr_adapter,
                    "weight_decay": cfg.weight_decay,
                    "name": "mlp",
                }
            )
            groups.append({"params": [a.b1, a.b2], "lr": cfg.lr_adapter, "name": "mlp_bias"})
        return groups

    def eval_slot(self, adapted: AdaptedModel) -> int:
        adapted.load_adapter(1, self.adapter.to_weights())
        return 1

    def write(self, state: State, metadata: dict[str, str]) -> None:
        save_adapter(adapter_weights(self.adapter.config, state, metadata), Path(self.config.out))

    def checkpoint_best(self, best: State | None) -> State | None:
        return best  # a few MB: the checkpoint carries it

    def resumed_best(self, stored: State | None, has_best: bool) -> State | None:
        return stored


class FullModelTrainable(Trainable):
    """Fine-tuning: every weight of the base trains (float32 master weights: ``AdapterTrainConfig``
    refuses another dtype). Dev evaluations decode with bank slot 0, the base itself, whose weights
    are the ones training."""

    adapter = None

    def __init__(self, config: AdapterTrainConfig, base: BaseModel) -> None:
        super().__init__(config, base)
        self.module = base.model
        self.prompt_length = 0

    def param_groups(self) -> list[dict[str, Any]]:
        cfg = self.config
        params = list(self.module.parameters())
        for p in params:
            p.requires_grad_(True)
        decay = [p for p in params if p.ndim >= 2]
        rest = [p for p in params if p.ndim < 2]
        return [
            {"params": decay, "lr": cfg.lr, "weight_decay": cfg.weight_decay, "name": "weights"},
            {"params": rest, "lr": cfg.lr, "name": "biases_norms"},
        ]

    def eval_slot(self, adapted: AdaptedModel) -> int:
        return 0

    def write(self, state: State, metadata: dict[str, str]) -> None:
        save_fine_tuned(self.base, state, metadata, Path(self.config.out))

    def checkpoint_best(self, best: State | None) -> State | None:
        return None  # a whole model: the best so far already lives in --out, written when it was found

    def resumed_best(self, stored: State | None, has_best: bool) -> State | None:
        if not has_best:
            return None
        model = type(self.base.model).from_pretrained(self.config.out)
        return cpu_state_dict(model)


def make_trainable(config: AdapterTrainConfig, base: BaseModel, device: torch.device) -> Trainable:
    """The trainable of ``config.method``."""
    if config.method == "fine-tuning":
        return FullModelTrainable(config, base)
    return AdapterTrainable(config, base, device)
