"""Corpus metrics with multi-reference support: sacrebleu BLEU, chrF, TER and rouge-score ROUGE-L.

Both trainers score with these: the adapter trainer's evaluations (``corpus_scores``) and the
pretraining gate (``corpus_bleu``).

sacrebleu wants references as rectangular *streams* (stream k holds every item's k-th reference).
Items with fewer references are padded with ``None``, which sacrebleu drops per item; padding with ''
would count an empty reference (it changes BLEU's brevity penalty and TER's average length).

rouge-score is optional (the offline training machine lacks it): it is imported lazily and, when it
is missing, ROUGE-L is reported as ``None`` with a warning, never as a silent zero.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sacrebleu.metrics import BLEU, CHRF, TER

ROUGE_MISSING = (
    "rouge-score is not installed, so ROUGE-L is not computed (reported as null): pip install rouge-score"
)


def reference_streams(references: Sequence[Sequence[str]]) -> list[list[str | None]]:
    """Per-item reference lists -> sacrebleu streams, padded with None where an item has fewer."""
    if any(len(refs) == 0 for refs in references):
        raise ValueError("every item needs at least one reference")
    width = max((len(refs) for refs in references), default=0)
    return [[refs[k] if k < len(refs) else None for refs in references] for k in range(width)]


def rouge_l(
    hypotheses: Sequence[str], references: Sequence[Sequence[str]], use_stemmer: bool = True
) -> float | None:
    """Mean over items of the best ROUGE-L F1 over the item's references (x100); None without rouge-score."""
    try:
        from rouge_score import rouge_scorer
    except ImportError:
        return None
    scorer = rouge_scorer.RougeScorer(["rougeL"], use_stemmer=use_stemmer)
    total = sum(
        scorer.score_multi(list(refs), hyp)["rougeL"].fmeasure
        for hyp, refs in zip(hypotheses, references, strict=True)
    )
    return 100.0 * total / len(hypotheses)


def _corpus_score(metric: BLEU | CHRF | TER, hypotheses: list[str], streams: list[list[str | None]]) -> float:
    return float(metric.corpus_score(hypotheses, streams).score)  # type: ignore[arg-type]  # None pads


def corpus_bleu(hypotheses: Sequence[str], references: Sequence[Sequence[str]]) -> float:
    """sacrebleu corpus BLEU (its default settings) with any number of references per hypothesis."""
    return _corpus_score(BLEU(), list(hypotheses), reference_streams(references))


def corpus_scores(hypotheses: Sequence[str], references: Sequence[Sequence[str]]) -> dict[str, Any]:
    """BLEU, chrF, TER (sacrebleu defaults) and ROUGE-L over a corpus.

    hypotheses: one string per item; references: one non-empty list of strings per item (any count).
    Returns {"bleu", "chrf", "ter", "rougeL": float | None, "signatures": {...}, "warnings": [...]}.
    """
    if len(hypotheses) != len(references):
        raise ValueError(f"{len(hypotheses)} hypotheses but {len(references)} reference lists")
    if not hypotheses:
        raise ValueError("no items to score")
    hyps = list(hypotheses)
    streams = reference_streams(references)
    scores: dict[str, Any] = {}
    signatures = {}
    for name, metric in (("bleu", BLEU()), ("chrf", CHRF()), ("ter", TER())):
        scores[name] = _corpus_score(metric, hyps, streams)
        signatures[name] = str(metric.get_signature())
    scores["rougeL"] = rouge_l(hyps, references)
    signatures["rougeL"] = "rouge-score rougeL F1, stemmer, max over references, mean over items"
    scores["signatures"] = signatures
    scores["warnings"] = [] if scores["rougeL"] is not None else [ROUGE_MISSING]
    return scores
