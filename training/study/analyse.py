"""The study's analyses, from the runs' JSON (and the data, for references and token counts):

- familiarity of every task (``familiarity_table``) -> ``familiarity.json``;
- sacrebleu's paired bootstrap of input-tuning against prompt-tuning per task -> ``paired.json``;
- part 3, adapter change vs token frequency for the demo's input-tuning adapters -> ``activation.json``.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from typing import Any

import numpy as np

from training.study.runs import select_runs
from training.study.stats import paired_bootstrap, spearman_interval
from training.study.tasks import STUDY_TASKS, load_study_task

DEMO_ADAPTERS = {"e2e": "e2e", "dart": "dart", "overnight": "overnight", "fr-en": "fr-en", "de-en": "de-en"}
ACTIVATION_INPUTS = 300  # test inputs per adapter whose tokens part 3 looks at


def _cache_dir() -> Path:
    import os

    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "inputtune" / "familiarity"


def paired_tests(results: Path, data_dir: str | None, test_items: int) -> dict[str, Any]:
    """PT (baseline) vs IT per task where both runs exist (the runs part 1 reports: dev-selected on the
    sweep tasks)."""
    out: dict[str, Any] = {}
    selected = select_runs(results)["selected"]
    for task in STUDY_TASKS:
        runs = selected.get(task, {})
        if not ("pt" in runs and "it" in runs):
            continue
        pt_rec, it_rec = runs["pt"], runs["it"]
        data = load_study_task(task, data_dir, test_items)
        refs = [list(item.references) for item in data.test]
        out[task] = paired_bootstrap(pt_rec["hypotheses"], it_rec["hypotheses"], refs)
    (results / "paired.json").write_text(json.dumps(out, indent=1) + "\n")
    return out


def activation_vs_frequency(
    model: str, adapter_dir: Path, results: Path, data_dir: str | None, work_dir: str = "runs/study"
) -> dict[str, Any]:
    """Part 3: for each demo input-tuning adapter, every distinct (non-special) token of its task's test
    inputs: the adapter's relative change, the token's corpus frequency (per million corpus tokens,
    counted as the first token of a corpus bigram) and the mean corpus frequency of the input bigrams it
    is part of. Spearman (change vs each frequency) with a bootstrap interval over token types."""
    import torch

    from adapters import load_adapter, load_base
    from training.activation import relative_change
    from training.familiarity import PER, bigram_keys, corpus_for_base, load_or_count, tokenize

    base = load_base(model, device="cpu", dtype="float32")
    tok = base.tokenizer
    counts, _ = load_or_count(corpus_for_base(Path(model), None, data_dir), tok, _cache_dir())
    vocab = len(tok)
    unigram = np.zeros(vocab, dtype=np.float64)
    for c in counts.values():
        unigram += np.bincount((c.keys // vocab).astype(np.int64), weights=c.counts, minlength=vocab)[:vocab]
    total_uni = unigram.sum()
    total_bi = sum(c.total for c in counts.values())
    special = set(tok.all_special_ids)
    embedding = base.model.get_input_embeddings().weight.detach()

    def one(task: str, path: Path, points: bool = True) -> dict[str, Any]:
        weights = load_adapter(path, base.fingerprint, base.d_model)
        sources = [item.source for item in load_study_task(task, data_dir, ACTIVATION_INPUTS).test]
        rows = list(tokenize(tok, sources))
        bigram_freq: dict[int, list[float]] = {}
        for row in rows:
            if len(row) < 2:
                continue
            keys = bigram_keys([row], vocab)
            found = sum((c.lookup(keys) for c in counts.values()), np.zeros(len(keys), dtype=np.int64))
            freq = PER * found / total_bi
            for j, f in enumerate(freq):
                for t in (row[j], row[j + 1]):
                    bigram_freq.setdefault(int(t), []).append(float(f))
        types = sorted({t for row in rows for t in row} - special)
        with torch.no_grad():
            change = relative_change(embedding[torch.tensor(types)], weights).numpy()
        uni = PER * unigram[types] / total_uni
        bi = np.array([np.mean(bigram_freq.get(t, [0.0])) for t in types])
        occurrences = np.array([sum(r.count(t) for r in rows) for t in types])
        record = {
            "adapter": str(path),
            "inputs": len(sources),
            "token_types": len(types),
            "unseen_types": int((unigram[types] == 0).sum()),
            "change_median": float(np.median(change)),
            "change_vs_token_frequency": spearman_interval(uni, change),
            "change_vs_bigram_frequency": spearman_interval(bi, change),
            "points": {
                "token": tok.convert_ids_to_tokens(types),
                "change": change.round(4).tolist(),
                "token_frequency": uni.round(4).tolist(),
                "bigram_frequency": bi.round(4).tolist(),
                "occurrences": occurrences.tolist(),
            },
        }
        if not points:
            del record["points"]
        return record

    out: dict[str, Any] = {"tasks": {}, "study": {}}
    for task, name in DEMO_ADAPTERS.items():
        path = adapter_dir / f"{name}.safetensors"
        if path.is_file():
            out["tasks"][task] = one(task, path)
    for task in STUDY_TASKS:  # the study's own part-1 input-tuning adapters, where this machine has them
        path = Path(work_dir) / f"{task}.it.safetensors"
        if path.is_file():
            out["study"][task] = one(task, path, points=False)
    (results / "activation.json").write_text(json.dumps(out, indent=1, ensure_ascii=False) + "\n")
    return out


def analyse(args: argparse.Namespace) -> None:
    from training.study.familiarity_table import familiarity_table

    results = Path(args.results)
    started = time.perf_counter()
    familiarity_table(args.model, results, _cache_dir(), args.data_dir)
    paired_tests(results, args.data_dir, args.test_items)
    activation_vs_frequency(
        args.model, Path(args.model).parent / "adapters", results, args.data_dir, args.work_dir
    )
    print(f"analyse: {time.perf_counter() - started:.0f}s")
