"""Evaluation: decode through the adapted model (what the server serves) and score the outputs.

``evaluate`` is the function API (the trainer's dev evaluations call it); ``run_eval`` in
``training/cli.py`` is ``inputtune eval``. Decoding goes through ``AdaptedModel.generate`` with
the adapter in a bank slot, so an evaluated adapter behaves exactly as it will when served.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Sequence
from typing import Any

from adapters import AdaptedModel, GenerationParams
from training.common.metrics import corpus_scores
from training.data import EvalItem
from training.errors import ConfigError, DataFormatError


def _room(model: AdaptedModel, slot: int, row: Sequence[int], params: GenerationParams) -> int:
    """New tokens row ``row`` may generate: params.max_new_tokens, or fewer where a decoder-only base
    with absolute positions would run out of them."""
    limit = model.base.max_positions
    if limit is None:
        return params.max_new_tokens
    return min(params.max_new_tokens, limit - model.bank.host_prompt_lengths[slot] - len(row))


def generate_all(
    model: AdaptedModel, slot: int, sources: Sequence[str], params: GenerationParams, batch_size: int = 32
) -> tuple[list[str], int]:
    """Outputs of every source (in input order) and the number of generated tokens.

    Rows are decoded longest first in batches of ``batch_size``, so each batch holds similar lengths.
    A row too long for ``max_new_tokens`` more positions (decoder-only bases) is decoded alone with the
    positions it has left: in a batch, the other rows' longer generation would carry it past them.
    """
    if batch_size < 1:
        raise ConfigError(f"batch_size must be >= 1, got {batch_size}")
    token_rows = model.encode(sources)
    order = sorted(range(len(token_rows)), key=lambda i: len(token_rows[i]), reverse=True)
    rooms = {i: _room(model, slot, token_rows[i], params) for i in order}
    cramped = [[i] for i in order if 1 <= rooms[i] < params.max_new_tokens]
    rest = [i for i in order if not 1 <= rooms[i] < params.max_new_tokens]  # room < 1: generate says why
    chunks = cramped + [rest[s : s + batch_size] for s in range(0, len(rest), batch_size)]
    texts: list[str] = [""] * len(token_rows)
    generated = 0
    for chunk in chunks:
        rows = [token_rows[i] for i in chunk]
        room = min(rooms[i] for i in chunk)
        row_params = (
            params
            if room >= params.max_new_tokens
            else dataclasses.replace(
                params, max_new_tokens=room, min_new_tokens=min(params.min_new_tokens, room)
            )
        )
        for i, out in zip(chunk, model.generate(rows, [slot] * len(rows), row_params), strict=True):
            texts[i] = out.text
            generated += out.generated_tokens
    return texts, generated


def evaluate(
    model: AdaptedModel,
    slot: int,
    items: Sequence[EvalItem],
    params: GenerationParams | None = None,
    batch_size: int = 32,
    num_examples: int = 5,
) -> dict[str, Any]:
    """Decode every item with the adapter in ``slot`` (0 = the base itself) and score it.

    params: decoding settings (default greedy, 64 new tokens).

    Returns {"scores": {"bleu", "chrf", "ter", "rougeL"}, "signatures", "warnings", "num_items",
    "hypotheses" (one per item, in order), "examples" (the first ``num_examples`` items with their
    output), "seconds", "generated_tokens", "items_per_s"}.
    """
    if not items:
        raise DataFormatError("no evaluation items: the split is empty")
    params = params or GenerationParams()
    start = time.perf_counter()
    hypotheses, generated = generate_all(model, slot, [it.source for it in items], params, batch_size)
    seconds = time.perf_counter() - start
    scored = corpus_scores(hypotheses, [it.references for it in items])
    return {
        "scores": {k: scored[k] for k in ("bleu", "chrf", "ter", "rougeL")},
        "signatures": scored["signatures"],
        "warnings": scored["warnings"],
        "num_items": len(items),
        "hypotheses": hypotheses,
        "examples": [
            {"source": it.source, "output": hyp, "references": list(it.references)}
            for it, hyp in zip(items[:num_examples], hypotheses, strict=False)
        ],
        "seconds": seconds,
        "generated_tokens": generated,
        "items_per_s": len(items) / seconds if seconds > 0 else None,
    }


def format_table(scores: dict[str, float | None]) -> str:
    """A two-line table of the scores (null shown as n/a)."""
    names = ["bleu", "chrf", "ter", "rougeL"]
    cells = ["n/a" if scores.get(n) is None else f"{scores[n]:.2f}" for n in names]
    widths = [max(len(n), len(c)) for n, c in zip(names, cells, strict=True)]
    head = "  ".join(n.rjust(w) for n, w in zip(names, widths, strict=True))
    row = "  ".join(c.rjust(w) for c, w in zip(cells, widths, strict=True))
    return f"{head}\n{row}"
