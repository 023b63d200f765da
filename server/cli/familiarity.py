"""`inputtune familiarity`: how familiar a task's inputs (or a file's) are to a base's pretraining corpus.

The measure (the average corpus bigram frequency, An et al. 2022) and its definition are in
``training.familiarity`` and docs/familiarity.md; this module picks the base, the corpus and where the
counts are cached, and prints the value with how to read it.
"""

from __future__ import annotations

import argparse
import json
import os
from pathlib import Path

from ..demo import DEMO_DIR, default_model_and_adapters
from ..settings import ServerSettings


def add_arguments(parser: argparse.ArgumentParser) -> None:
    what = parser.add_mutually_exclusive_group(required=True)
    what.add_argument(
        "--task", help="built-in task (e2e, dart, webnlg, overnight, fr-en, ...; also e2e-opaque, e2e-plain)"
    )
    what.add_argument(
        "--file", help="your inputs: .txt (one per line), .jsonl ('source' or 'text') or .csv ('source')"
    )
    parser.add_argument("--split", default="test", help="the task's split (default test)")
    parser.add_argument("--model", help="base model folder (default: the embedded demo base)")
    parser.add_argument(
        "--corpus",
        nargs="+",
        metavar="FILE",
        help="count bigrams in these files instead (.txt lines, .jsonl 'text', .csv): for a base whose "
        "folder has no recipe.json, such as T5-large (give a sample of C4-like English text)",
    )
    parser.add_argument(
        "--data-dir", help="the shared data folder (default: $INPUTTUNE_DATA_DIR or ../shared/data)"
    )
    parser.add_argument(
        "--cache-dir",
        help="where the bigram counts are cached (default: next to the base when its folder is writable; "
        "the user cache folder for the embedded demo and read-only folders)",
    )
    parser.add_argument("--json", action="store_true", help="print the result as JSON")


def cache_dir_for(base_dir: Path, explicit: str | None) -> Path:
    """--cache-dir; else next to the base if writable and not the embedded demo; else the user cache."""
    if explicit:
        return Path(explicit)
    is_demo = base_dir.resolve() == (DEMO_DIR / "base").resolve()
    if not is_demo and os.access(base_dir, os.W_OK):
        return base_dir
    return ServerSettings().cache / "familiarity"


def run(args: argparse.Namespace) -> int:
    from transformers import AutoTokenizer

    from training.familiarity import corpus_for_base, input_units, load_or_count, measure, reading
    from training.study.tasks import task_inputs

    base_dir = Path(args.model) if args.model else default_model_and_adapters(ServerSettings().cache)[0]
    if not (base_dir / "config.json").is_file():
        from adapters import BaseModelError

        raise BaseModelError(f"{base_dir} is not a model folder (no config.json): pass --model FOLDER")
    tokenizer = AutoTokenizer.from_pretrained(str(base_dir))
    spec = corpus_for_base(base_dir, args.corpus, args.data_dir)
    texts = task_inputs(args.task, args.data_dir, args.split) if args.task else input_units(args.file)
    counts, facts = load_or_count(spec, tokenizer, cache_dir_for(base_dir, args.cache_dir))
    result = measure(texts, tokenizer, counts)
    result.update(
        what=f"task {args.task} ({args.split})" if args.task else str(args.file),
        base=str(base_dir),
        corpus=spec.source,
        corpus_note=spec.note,
        reading=reading(result["familiarity"]),
        cache=facts,
    )
    if args.json:
        print(json.dumps(result, indent=2))
        return 0
    print(f"{result['what']}: {result['inputs']} inputs, {result['bigrams']} token bigrams")
    print(
        spec.note
        + ("" if facts["cached"] else f" (counted in {facts['seconds']:.0f}s, cached in {facts['cache']})")
    )
    if result["familiarity"] is None:
        print(result["reading"])
        return 0
    print(
        f"familiarity: {result['familiarity']:.1f} per million corpus bigrams (mean over the input bigrams; "
        f"{100 * result['unseen']:.1f}% of them never occur in the corpus and count as 0)"
    )
    for name, part in result.get("parts", {}).items():
        print(f"  {name} alone: {part['familiarity']:.1f} ({100 * part['unseen']:.1f}% unseen)")
    print(f"reading: {result['reading']} (thresholds: docs/familiarity.md)")
    return 0
