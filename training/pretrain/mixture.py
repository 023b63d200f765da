"""The pretraining mixture: tokenise the corpus once, then a deterministic stream of per-step
micro-batches.

`prepare_corpus` reads the books and the supervised tasks' train splits and tokenises all of it in
a few batch calls of the Rust tokenizer (all CPU cores). `MixtureStream.step_batches(step)` gives
the micro-batches of one optimizer step: one span-corruption batch and one prefix-LM batch of book
windows (fixed shapes, no padding) and one length-sorted batch of supervised pairs, sized so that
each source gets its share of the step's tokens. The stream is a pure function of (seed, step), so
a resumed run only needs the step number to continue exactly.

Shapes: N rows, Ls encoder tokens, Lt decoder tokens.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from training.common.losses import IGNORE_INDEX
from training.data import load_task, normalize_whitespace
from training.errors import PresetError
from training.pretrain.books import load_books
from training.pretrain.config import (
    BOOK_OBJECTIVES,
    SUPERVISED_TASKS,
    PretrainDataConfig,
    PretrainMixtureConfig,
)
from training.pretrain.objectives import (
    Ragged,
    length_sorted_chunks,
    prefix_lm,
    random_split,
    random_windows,
    span_corruption,
    span_corruption_lengths,
    supervised_ids,
)
from training.pretrain.tokenizer import EOS, PAD, sentinel_token

log = logging.getLogger(__name__)

# Stream ids that keep the random draws of each source independent of the others.
_SPAN, _PREFIX, _SUPERVISED_ROUND, _EPOCH = 1, 2, 3, 4


def encode_batch(tokenizer: Any, texts: Sequence[str]) -> list[list[int]]:
    """Token ids without special tokens, through the Rust tokenizer's parallel batch encode."""
    backend = tokenizer.backend_tokenizer
    encode = getattr(
        backend, "encode_batch_fast", backend.encode_batch
    )  # fast: no offsets (tokenizers>=0.21)
    return [encoding.ids for encoding in encode(list(texts), add_special_tokens=False)]


@dataclass
class SupervisedTask:
    """One task's train pairs as encoder ids (prefix + source + </s>) and decoder ids (target + </s>)."""

    name: str
    sources: Ragged
    targets: Ragged

    def __len__(self) -> int:
        return len(self.sources)

    @property
    def mean_tokens(self) -> float:
        return float((self.sources.lengths + self.targets.lengths).mean())


@dataclass
class Corpus:
    """Everything tokenised: the book streams and the supervised tasks, with counts for the recipe."""

    train_books: np.ndarray  # (tokens,) int32, the training books concatenated
    val_books: np.ndarray  # (tokens,) int32, the held-out books
    tasks: dict[str, SupervisedTask]
    pad_id: int
    eos_id: int
    sentinel_ids: list[int]
    facts: dict[str, Any] = field(default_factory=dict)


def _book_paragraphs(text: str) -> list[str]:
    return [p for p in (normalize_whitespace(part) for part in text.split("\n\n")) if p]


def prepare_corpus(tokenizer: Any, config: PretrainDataConfig, data_dir: str | Path | None = None) -> Corpus:
    """Read and tokenise the books and the supervised train splits (see the module docstring)."""
    started = time.perf_counter()
    facts: dict[str, Any] = {}
    books = load_books(data_dir)
    every = config.heldout_book_every
    heldout = {name for i, (name, _) in enumerate(books) if every and i % every == every - 1}
    if len(heldout) == len(books):
        raise PresetError("every book would be held out: raise data.heldout_book_every")
    train_paragraphs: list[str] = []
    val_paragraphs: list[str] = []
    taken = 0
    for name, text in books:
        paragraphs = _book_paragraphs(text)
        if name in heldout:
            val_paragraphs += paragraphs
            continue
        if config.book_chars is not None:
            room = config.book_chars - taken
            kept: list[str] = []
            for p in paragraphs:
                if room <= 0:
                    break
                kept.append(p)
                room -= len(p)
            paragraphs = kept
            taken = config.book_chars - room
        train_paragraphs += paragraphs
    if config.book_chars is not None:
        val_paragraphs = val_paragraphs[: max(1, len(val_paragraphs) // 20)]

    pairs: dict[str, list[tuple[str, str]]] = {}
    for task in SUPERVISED_TASKS:
        split = load_task(task, "train", data_dir, limit=config.task_limit, exclude_e2e=task == "dart")
        pairs[task] = [(ex.source, ex.target) for ex in split.examples]
    facts["read_s"] = round(time.perf_counter() - started, 2)

    started = time.perf_counter()
    texts = [*train_paragraphs, *val_paragraphs]
    prefixes = list(dict.fromkeys(config.prefixes[task] for task in SUPERVISED_TASKS))
    for task in SUPERVISED_TASKS:
        texts += [s for s, _ in pairs[task]] + [t for _, t in pairs[task]]
    ids = encode_batch(tokenizer, texts)
    prefix_ids = dict(zip(prefixes, encode_batch(tokenizer, [p.strip() for p in prefixes]), strict=True))
    facts["tokenize_s"] = round(time.perf_counter() - started, 2)

    started = time.perf_counter()
    eos_id = tokenizer.convert_tokens_to_ids(EOS)
    pad_id = tokenizer.convert_tokens_to_ids(PAD)
    cursor = 0

    def take(count: int) -> list[list[int]]:
        nonlocal cursor
        cursor += count
        return ids[cursor - count : cursor]

    train_books = Ragged.from_lists(take(len(train_paragraphs))).tokens
    val_books = Ragged.from_lists(take(len(val_paragraphs))).tokens
    tasks = {}
    for task in SUPERVISED_TASKS:
        source_ids, target_ids = take(len(pairs[task])), take(len(pairs[task]))
        prefix = prefix_ids[config.prefixes[task]]
        encoded = [
            supervised_ids(prefix, s, t, eos_id, config.max_source_length, config.max_target_length)
            for s, t in zip(source_ids, target_ids, strict=True)
        ]
        tasks[task] = SupervisedTask(
            task, Ragged.from_lists([e[0] for e in encoded]), Ragged.from_lists([e[1] for e in encoded])
        )
        truncated = sum(
            len(prefix) + len(s) + 1 > config.max_source_length or len(t) + 1 > config.max_target_length
            for s, t in zip(source_ids, target_ids, strict=True)
        )
        facts[f"{task}_truncated_examples"] = int(truncated)
    facts["pack_s"] = round(time.perf_counter() - started, 2)
    facts.update(
        books_train=len(books) - len(heldout),
        books_heldout=sorted(heldout),
        book_paragraphs=len(train_paragraphs),
        book_tokens_train=int(len(train_books)),
        book_tokens_val=int(len(val_books)),
        **{f"{task}_examples": len(t) for task, t in tasks.items()},
        **{f"{task}_tokens": int(t.sources.offsets[-1] + t.targets.offsets[-1]) for task, t in tasks.items()},
    )
    sentinels = [tokenizer.convert_tokens_to_ids(sentinel_token(i)) for i in range(100)]
    sentinels = [s for s in sentinels if s is not None and s != tokenizer.unk_token_id]
    return Corpus(train_books, val_books, tasks, pad_id, eos_id, sentinels, facts)


@dataclass
class MicroBatch:
    """One objective's rows for one step: encoder ids (N, Ls), labels (N, Lt) with IGNORE_INDEX on padding."""

    source: str
    input_ids: np.ndarray
    labels: np.ndarray
    pad_id: int

    @property
    def tokens(self) -> int:
        """Non-padding tokens, encoder and decoder together."""
        return int((self.input_ids != self.pad_id).sum() + (self.labels != IGNORE_INDEX).sum())

    @property
    def target_tokens(self) -> int:
        return int((self.labels != IGNORE_INDEX).sum())


class MixtureStream:
    """The per-step micro-batches of the pretraining mixture (see the module docstring).

    Per step: span corruption gets `rows_span` windows, prefix-LM `rows_prefix` windows with one
    random split point, and each supervised task about `weight x step_tokens / mean example tokens`
    examples. Supervised examples come from per-task "virtual epochs" (a seeded permutation per pass
    over the task); `round_steps` steps' worth are pooled, sorted by length and cut into one chunk
    per step, so the supervised batch of a step mixes the tasks and pads little.
    """

    def __init__(
        self, corpus: Corpus, data: PretrainDataConfig, mixture: PretrainMixtureConfig, seed: int
    ) -> None:
        self.corpus, self.data, self.seed = corpus, data, seed
        self.weights = mixture.normalised()
        self.round_steps = mixture.round_steps
        self.span_raw, self.span_target = span_corruption_lengths(
            data.span_inputs_length, data.noise_density, data.mean_noise_span_length
        )
        step_tokens = mixture.step_tokens
        self.rows_span = self._rows(
            "span_corruption", step_tokens, data.span_inputs_length + self.span_target
        )
        self.rows_prefix = self._rows("prefix_lm", step_tokens, data.prefix_lm_length + 2)
        self.per_round = {
            task: max(
                1, round(self.weights[task] * step_tokens * self.round_steps / corpus.tasks[task].mean_tokens)
            )
            for task in SUPERVISED_TASKS
            if task in self.weights
        }
        self._round_cache: tuple[int, list[np.ndarray]] | None = None
        self._perm_cache: dict[tuple[str, int], np.ndarray] = {}

    def _rows(self, source: str, step_tokens: int, row_tokens: int) -> int:
        weight = self.weights.get(source, 0.0)
        return max(1, round(weight * step_tokens / row_tokens)) if weight > 0 else 0

    def describe(self) -> dict[str, Any]:
        """Per-step sizes for the recipe."""
        return {
            "span_corruption": {
                "rows": self.rows_span,
                "raw_length": self.span_raw,
                "inputs_length": self.data.span_inputs_length,
                "targets_length": self.span_target,
            },
            "prefix_lm": {"rows": self.rows_prefix, "window": self.data.prefix_lm_length},
            "supervised_examples_per_step": {t: n / self.round_steps for t, n in self.per_round.items()},
        }

    # --- supervised rounds ----------------------------------------------------------------------------

    def _task_indices(self, task: str, start: int, count: int) -> np.ndarray:
        """Examples start .. start+count of the task's endless stream of seeded epoch permutations."""
        size = len(self.corpus.tasks[task])
        task_id = SUPERVISED_TASKS.index(task)
        positions = np.arange(start, start + count)
        out = np.empty(count, dtype=np.int64)
        for epoch in np.unique(positions // size):
            key = (task, int(epoch))
            if key not in self._perm_cache:
                if len(self._perm_cache) > 8:
                    self._perm_cache.clear()
                rng = np.random.default_rng([self.seed, _EPOCH, task_id, int(epoch)])
                self._perm_cache[key] = rng.permutation(size)
            in_epoch = positions // size == epoch
            out[in_epoch] = self._perm_cache[key][positions[in_epoch] % size]
        return out

    def _round(self, round_index: int) -> list[np.ndarray]:
        """The supervised chunks of one round, one per step (a chunk is (task id, example) pairs)."""
        if self._round_cache is not None and self._round_cache[0] == round_index:
            return self._round_cache[1]
        picks = []
        for task, count in self.per_round.items():
            indices = self._task_indices(task, round_index * count, count)
            picks.append(np.stack([np.full(count, SUPERVISED_TASKS.index(task)), indices], axis=1))
        chunks: list[np.ndarray] = []
        if picks:
            pool = np.concatenate(picks)  # (M, 2): task id, example index
            tasks = [self.corpus.tasks[t] for t in SUPERVISED_TASKS]
            source_lengths = np.array([tasks[t].sources.lengths[i] for t, i in pool])
            target_lengths = np.array([tasks[t].targets.lengths[i] for t, i in pool])
            chunks = [pool[c] for c in length_sorted_chunks(source_lengths, target_lengths, self.round_steps)]
            rng = np.random.default_rng([self.seed, _SUPERVISED_ROUND, round_index])
            chunks = [chunks[i] for i in rng.permutation(len(chunks))]
        self._round_cache = (round_index, chunks)
        return chunks

    def supervised_batch(self, pairs: np.ndarray, multiple: int = 8) -> MicroBatch:
        """Pad a chunk of (task id, example index) pairs into one micro-batch."""
        pad = self.corpus.pad_id
        sources, targets = [], []
        for task_id in np.unique(pairs[:, 0]):
            task = self.corpus.tasks[SUPERVISED_TASKS[task_id]]
            rows = pairs[pairs[:, 0] == task_id, 1]
            sources.append((task.sources, rows))
            targets.append((task.targets, rows))
        width_s = max(int(r.lengths[i].max()) for r, i in sources)
        width_t = max(int(r.lengths[i].max()) for r, i in targets)
        width_s, width_t = -(-width_s // multiple) * multiple, -(-width_t // multiple) * multiple

        def stack(parts: list[tuple[Ragged, np.ndarray]], width: int, fill: int) -> np.ndarray:
            blocks = []
            for ragged, rows in parts:
                block = ragged.padded(rows, fill)
                blocks.append(np.pad(block, ((0, 0), (0, width - block.shape[1])), constant_values=fill))
            return np.concatenate(blocks)

        return MicroBatch(
            "supervised", stack(sources, width_s, pad), stack(targets, width_t, IGNORE_INDEX), pad
        )

    # --- one step -----------------------------------------------------------------------------------

    def step_batches(self, step: int) -> list[MicroBatch]:
        """The micro-batches of optimizer step `step` (0-based); deterministic for (seed, step)."""
        corpus, data = self.corpus, self.data
        batches = []
        if self.rows_span:
            rng = np.random.default_rng([self.seed, _SPAN, step])
            rows = random_windows(rng, corpus.train_books, self.rows_span, self.span_raw)
            inputs, targets = span_corruption(
                rows, rng, corpus.sentinel_ids, corpus.eos_id, data.noise_density, data.mean_noise_span_length
            )
            batches.append(
                MicroBatch(
                    "span_corruption", inputs.astype(np.int64), targets.astype(np.int64), corpus.pad_id
                )
            )
        if self.rows_prefix:
            rng = np.random.default_rng([self.seed, _PREFIX, step])
            rows = random_windows(rng, corpus.train_books, self.rows_prefix, data.prefix_lm_length)
            split = random_split(
                rng, data.prefix_lm_length, data.prefix_lm_min_prefix, data.prefix_lm_min_target
            )
            inputs, targets = prefix_lm(rows, split, corpus.eos_id)
            batches.append(
                MicroBatch("prefix_lm", inputs.astype(np.int64), targets.astype(np.int64), corpus.pad_id)
            )
        chunks = self._round(step // self.round_steps)
        position = step % self.round_steps
        if position < len(chunks):
            batches.append(self.supervised_batch(chunks[position]))
        return batches


def validation_batches(
    corpus: Corpus, data: PretrainDataConfig, rows: int, seed: int = 1234
) -> list[MicroBatch]:
    """Fixed held-out-book batches (span corruption and prefix-LM at the middle split) for val losses."""
    batches = []
    raw, _ = span_corruption_lengths(data.span_inputs_length, data.noise_density, data.mean_noise_span_length)
    rng = np.random.default_rng([seed])
    stream = corpus.val_books
    if len(stream) >= raw:
        windows = random_windows(rng, stream, rows, raw)
        inputs, targets = span_corruption(
            windows, rng, corpus.sentinel_ids, corpus.eos_id, data.noise_density, data.mean_noise_span_length
        )
        batches.append(
            MicroBatch("span_corruption", inputs.astype(np.int64), targets.astype(np.int64), corpus.pad_id)
        )
    if len(stream) >= data.prefix_lm_length:
        windows = random_windows(rng, stream, rows, data.prefix_lm_length)
        inputs, targets = prefix_lm(windows, data.prefix_lm_length // 2, corpus.eos_id)
        batches.append(
            MicroBatch("prefix_lm", inputs.astype(np.int64), targets.astype(np.int64), corpus.pad_id)
        )
    return batches


__all__ = ["BOOK_OBJECTIVES", "Corpus", "MicroBatch", "MixtureStream", "prepare_corpus", "validation_batches"]
