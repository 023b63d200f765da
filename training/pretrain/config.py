"""The pretraining recipe as validated dataclasses, read from the JSON presets in
`training/pretrain/presets/`.

A preset is one JSON object with the sections below; unknown keys are an error. `--set key=value`
overrides one field (`train.lr=0.001`, `mixture.weights={"prefix_lm": 1}`), the value read as JSON.
The classes are named `Pretrain*` so that none shares a name with the adapter trainer's
(`training.config.AdapterTrainConfig`); the JSON sections keep their short names.
"""

from __future__ import annotations

import dataclasses
import json
import typing
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from training.errors import PresetError

PRESET_DIR = Path(__file__).resolve().parent / "presets"
BOOK_OBJECTIVES = ("span_corruption", "prefix_lm")
SUPERVISED_TASKS = ("fr-en", "webnlg", "dart")  # E2E, OVERNIGHT and de/cs/ro-en stay out on purpose


@dataclass
class PretrainModelConfig:
    """A T5 shape (transformers `T5Config` fields)."""

    d_model: int
    d_ff: int
    num_layers: int
    num_decoder_layers: int
    num_heads: int
    d_kv: int = 64
    feed_forward_proj: str = "gated-gelu"  # T5 v1.1; "relu" is v1.0
    tie_word_embeddings: bool = True
    dropout_rate: float = 0.0
    relative_attention_num_buckets: int = 32
    relative_attention_max_distance: int = 128
    attn_implementation: str = "sdpa"  # for training only (not saved): "eager" is faster on a CPU

    def __post_init__(self) -> None:
        if self.attn_implementation not in ("sdpa", "eager"):
            raise PresetError(f"model.attn_implementation {self.attn_implementation!r}: use sdpa or eager")
        if self.feed_forward_proj not in ("relu", "gated-gelu", "gelu", "gated-relu"):
            raise PresetError(f"model.feed_forward_proj {self.feed_forward_proj!r}: use relu or gated-gelu")
        _positive(self, "d_model", "d_ff", "num_layers", "num_decoder_layers", "num_heads", "d_kv")
        if not 0 <= self.dropout_rate < 1:
            raise PresetError(f"model.dropout_rate must be in [0, 1), got {self.dropout_rate}")


@dataclass
class PretrainTokenizerConfig:
    vocab_size: int
    num_sentinels: int = 100
    book_chars: int | None = None  # cap on book text in the tokenizer corpus (None: all)

    def __post_init__(self) -> None:
        _positive(self, "vocab_size", "num_sentinels")


@dataclass
class PretrainDataConfig:
    """What the example streams are made of."""

    span_inputs_length: int = 256  # corrupted input length incl. </s>; raw window follows (T5 helper)
    noise_density: float = 0.15
    mean_noise_span_length: float = 3.0
    prefix_lm_length: int = 256  # raw window, cut into prefix (encoder) + continuation (decoder)
    prefix_lm_min_prefix: int = 16
    prefix_lm_min_target: int = 32
    max_source_length: int = 192
    max_target_length: int = 128
    prefixes: dict[str, str] = field(
        default_factory=lambda: {
            "fr-en": "translate French to English: ",
            "webnlg": "graph to text: ",
            "dart": "graph to text: ",
        }
    )
    heldout_book_every: int = 80  # book i (sorted by name) is held out for validation when i % N == N-1
    book_chars: int | None = None  # cap on book text used (None: all); for tests and quick trials
    task_limit: int | None = None  # cap on distinct sources per supervised task (None: all)

    def __post_init__(self) -> None:
        _positive(self, "span_inputs_length", "prefix_lm_length", "max_source_length", "max_target_length")
        if self.prefix_lm_min_prefix + self.prefix_lm_min_target > self.prefix_lm_length:
            raise PresetError("data.prefix_lm_min_prefix + prefix_lm_min_target exceed prefix_lm_length")
        if not 0 < self.noise_density < 1:
            raise PresetError(f"data.noise_density must be in (0, 1), got {self.noise_density}")
        missing = [task for task in SUPERVISED_TASKS if task not in self.prefixes]
        if missing:
            raise PresetError(f"data.prefixes lacks {missing}: give a text prefix for every supervised task")


@dataclass
class PretrainMixtureConfig:
    """Shares of each step's non-padding tokens (encoder + decoder) per source; normalised."""

    weights: dict[str, float]
    step_tokens: int  # non-padding tokens per optimizer step, all sources together
    round_steps: int = 50  # supervised examples are length-sorted over pools of this many steps

    def __post_init__(self) -> None:
        known = (*BOOK_OBJECTIVES, *SUPERVISED_TASKS)
        unknown = [name for name in self.weights if name not in known]
        if unknown:
            raise PresetError(f"mixture.weights has unknown sources {unknown}: use {', '.join(known)}")
        if any(w < 0 for w in self.weights.values()) or sum(self.weights.values()) <= 0:
            raise PresetError("mixture.weights must be non-negative with a positive sum")
        _positive(self, "step_tokens", "round_steps")

    def normalised(self) -> dict[str, float]:
        total = sum(self.weights.values())
        return {name: w / total for name, w in self.weights.items() if w > 0}


@dataclass
class PretrainTrainConfig:
    lr: float
    warmup_steps: int
    final_lr_fraction: float = 0.1
    schedule: str = "cosine"
    weight_decay: float = 0.01  # matrices only; embeddings, norms and position biases get none
    betas: tuple[float, float] = (0.9, 0.98)
    grad_clip: float = 1.0
    max_steps: int | None = None
    time_budget_min: float | None = None
    measure_steps: int = 30
    reserve_s: float = 0.0  # kept free at the end of the time budget (for saving)
    log_every: int = 50
    checkpoint_every_steps: int | None = None
    checkpoint_every_min: float | None = 10.0
    seed: int = 0
    compile: bool = False  # torch.compile the model (CUDA only)

    def __post_init__(self) -> None:
        self.betas = (float(self.betas[0]), float(self.betas[1]))
        if self.schedule not in ("cosine", "linear"):
            raise PresetError(f"train.schedule {self.schedule!r}: use cosine or linear")
        _positive(self, "lr", "warmup_steps", "measure_steps", "log_every")
        if self.max_steps is None and self.time_budget_min is None:
            raise PresetError("train needs max_steps or time_budget_min (or both)")


@dataclass
class PretrainGateConfig:
    """Minimum scores for the base to pass; 0 disables a check."""

    min_distinct: float = 0.9  # distinct outputs over the first 100 French test sentences
    min_input_gain: float = 0.3  # nats/token: reference loss with a wrong source minus with the right one
    min_fr_en_bleu: float = 0.0
    min_webnlg_bleu: float = 0.0
    max_encoder_cosine: float = 0.9  # mean cosine between encoder outputs at two positions; 1 disables


@dataclass
class PretrainEvalConfig:
    batch_size: int = 128
    max_new_tokens: int = 64
    fr_en_limit: int | None = None  # Multi30k test_2016_flickr sentences to score (None: all 1,000)
    webnlg_limit: int | None = None  # WebNLG dev inputs to score (None: all)
    distinct_count: int = 100
    gain_count: int = 200
    num_samples: int = 5  # prefix-LM continuations of held-out English (FLORES) to show
    gate: PretrainGateConfig = field(default_factory=PretrainGateConfig)


@dataclass
class PretrainPreset:
    name: str
    why: str
    model: PretrainModelConfig
    tokenizer: PretrainTokenizerConfig
    data: PretrainDataConfig
    mixture: PretrainMixtureConfig
    train: PretrainTrainConfig
    eval: PretrainEvalConfig = field(default_factory=PretrainEvalConfig)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _positive(obj: Any, *names: str) -> None:
    for name in names:
        value = getattr(obj, name)
        if value is None or value <= 0:
            section = type(obj).__name__.removeprefix("Pretrain")  # the name the message always gave
            raise PresetError(f"{section}.{name} must be positive, got {value}")


def _build(cls: type, data: Any, where: str) -> Any:
    """Construct dataclass `cls` from a dict, recursing into dataclass fields; unknown keys are errors."""
    if not isinstance(data, dict):
        raise PresetError(f"{where} must be a JSON object, got {type(data).__name__}")
    hints = typing.get_type_hints(cls)
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(data) - names)
    if unknown:
        raise PresetError(f"{where} has unknown keys {unknown}; known: {sorted(names)}")
    kwargs: dict[str, Any] = {}
    for key, value in data.items():
        hint = hints[key]
        is_section = isinstance(hint, type) and dataclasses.is_dataclass(hint)
        kwargs[key] = _build(hint, value, f"{where}.{key}") if is_section else value
    try:
        return cls(**kwargs)
    except TypeError as e:
        raise PresetError(f"{where}: {e}") from e


def preset_from_dict(data: dict[str, Any]) -> PretrainPreset:
    return _build(PretrainPreset, data, "preset")


def load_preset(name_or_path: str | Path, overrides: list[str] | None = None) -> PretrainPreset:
    """A preset by name (`tiny`, `cpu`, `gpu` in training/pretrain/presets/) or JSON path, plus
    `key=value` overrides."""
    path = Path(name_or_path)
    if not path.suffix and not path.exists():
        path = PRESET_DIR / f"{name_or_path}.json"
    if not path.is_file():
        known = ", ".join(sorted(p.stem for p in PRESET_DIR.glob("*.json")))
        raise PresetError(f"preset {name_or_path!r} not found: use one of {known} or a path to a JSON file")
    data = json.loads(path.read_text(encoding="utf-8"))
    for override in overrides or []:
        apply_override(data, override)
    return preset_from_dict(data)


def apply_override(data: dict[str, Any], override: str) -> None:
    """Set `section.key=value` in a preset dict in place; the value is JSON, else a plain string."""
    key, sep, raw = override.partition("=")
    if not sep:
        raise PresetError(f"override {override!r} must look like section.key=value")
    try:
        value = json.loads(raw)
    except json.JSONDecodeError:
        value = raw
    *parents, leaf = key.split(".")
    node = data
    for part in parents:
        if not isinstance(node.get(part), dict):
            node[part] = {}
        node = node[part]
    node[leaf] = value
