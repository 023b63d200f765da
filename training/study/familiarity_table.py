"""Part 2's x axis: the familiarity of every study task's test inputs to the base's pretraining corpus,
written to ``<results>/familiarity.json``."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

from training.familiarity import corpus_for_base, load_or_count, measure, reading
from training.study.tasks import STUDY_TASKS, task_inputs


def familiarity_table(
    model: str, results: Path, cache_dir: Path, data_dir: str | None = None
) -> dict[str, Any]:
    """{task: measure(...) + reading} for every study task (test split), and the corpus facts."""
    from transformers import AutoTokenizer

    started = time.perf_counter()
    tokenizer = AutoTokenizer.from_pretrained(model)
    spec = corpus_for_base(Path(model), None, data_dir)
    counts, facts = load_or_count(spec, tokenizer, cache_dir)
    tasks = {}
    for task in STUDY_TASKS:
        result = measure(task_inputs(task, data_dir), tokenizer, counts)
        result["reading"] = reading(result["familiarity"])
        tasks[task] = result
    table = {
        "base": model,
        "corpus": spec.description,
        "corpus_bigrams": {name: c.total for name, c in counts.items()},
        "counted_s": None if facts["cached"] else round(facts["seconds"], 1),
        "seconds": round(time.perf_counter() - started, 1),
        "tasks": tasks,
    }
    results.mkdir(parents=True, exist_ok=True)
    (results / "familiarity.json").write_text(json.dumps(table, indent=1) + "\n")
    return table
