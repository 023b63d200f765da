"""Metrics equal sacrebleu / rouge-score called directly; evaluate() decodes exactly what is served."""

from __future__ import annotations

import sys

import pytest
import sacrebleu

from adapters import GenerationParams
from tests.conftest import TEXTS, make_model
from training.common.metrics import ROUGE_MISSING, corpus_scores, reference_streams
from training.data import EvalItem
from training.evaluate import evaluate, format_table

HYPS = [
    "the cat sat on the mat",
    "a quick brown fox jumps",
    "there is a restaurant called The Eagle near the river",
    "hello",
]
SINGLE = [
    ["the cat is sitting on the mat"],
    ["the quick brown fox jumped over"],
    ["The Eagle is a restaurant by the river"],
    ["hello there"],
]
RAGGED = [  # 3, 1, 2 and 1 references
    ["the cat is sitting on the mat", "a cat sat on the mat", "there is a cat on the mat"],
    ["the quick brown fox jumped over"],
    ["The Eagle is a restaurant by the river", "near the river there is a restaurant called The Eagle"],
    ["hello there"],
]


pytestmark = pytest.mark.usefixtures("one_thread")  # tests/training/conftest.py


def _direct(hyps, streams):
    return {
        "bleu": sacrebleu.corpus_bleu(hyps, streams).score,
        "chrf": sacrebleu.corpus_chrf(hyps, streams).score,
        "ter": sacrebleu.corpus_ter(hyps, streams).score,
    }


def _rouge_direct(hyps, refs):
    rouge_scorer = pytest.importorskip("rouge_score.rouge_scorer")  # optional on the GPU training machine
    scorer = rouge_scorer.RougeScorer(["rougeL"], use_stemmer=True)
    best = [max(scorer.score(r, h)["rougeL"].fmeasure for r in rs) for h, rs in zip(hyps, refs, strict=True)]
    return 100 * sum(best) / len(best)


def test_single_reference_scores_equal_sacrebleu_and_rouge_score():
    ours = corpus_scores(HYPS, SINGLE)
    direct = _direct(HYPS, [[r[0] for r in SINGLE]])
    for name, value in direct.items():
        assert ours[name] == pytest.approx(value, abs=1e-9), name
    assert ours["rougeL"] == pytest.approx(_rouge_direct(HYPS, SINGLE), abs=1e-9)
    assert 0 < ours["bleu"] < 100 and ours["warnings"] == []
    assert ours["signatures"]["bleu"].startswith("nrefs:1")


def test_uneven_reference_counts_score_like_each_item_alone_would():
    """Repeating each item's references cyclically up to 6 (the lcm of 3, 2, 1) changes no metric: BLEU
    and chrF take the best reference, TER averages the reference lengths and takes the best edits. So
    the rectangular repeat is an independent check of the None-padding sacrebleu gets from us."""
    ours = corpus_scores(HYPS, RAGGED)
    repeated = [[refs[k % len(refs)] for refs in RAGGED] for k in range(6)]
    for name, value in _direct(HYPS, repeated).items():
        assert ours[name] == pytest.approx(value, abs=1e-9), name
    assert ours["rougeL"] == pytest.approx(_rouge_direct(HYPS, RAGGED), abs=1e-9)
    assert ours["signatures"]["bleu"].startswith("nrefs:var")
    # padding with '' instead would count empty references and change the scores
    empty = [[refs[k] if k < len(refs) else "" for refs in RAGGED] for k in range(3)]
    assert _direct(HYPS, empty)["ter"] != pytest.approx(ours["ter"])
    # more references can only help BLEU here
    assert ours["bleu"] > corpus_scores(HYPS, SINGLE)["bleu"]


def test_reference_streams_are_rectangular_and_padded_with_none():
    assert reference_streams([["a", "b"], ["c"]]) == [["a", "c"], ["b", None]]
    with pytest.raises(ValueError, match="at least one reference"):
        reference_streams([["a"], []])


def test_missing_rouge_score_is_null_with_a_warning_never_zero(monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "rouge_score", None)  # `import rouge_score` now raises ImportError
    ours = corpus_scores(HYPS, SINGLE)
    assert ours["rougeL"] is None and ours["warnings"] == [ROUGE_MISSING]
    assert ours["bleu"] == pytest.approx(corpus_scores(HYPS, SINGLE)["bleu"])
    assert "n/a" in format_table(ours)


def test_evaluate_decodes_through_the_adapted_model_in_input_order():
    model = make_model("t5")
    items = [EvalItem(text, (f"ref {i}", "another")) for i, text in enumerate(TEXTS[:9])]
    params = GenerationParams(max_new_tokens=5)
    result = evaluate(model, 2, items, params, batch_size=4, num_examples=3)
    served = [o.text for o in model.generate([it.source for it in items], [2] * len(items), params)]
    assert result["hypotheses"] == served
    assert evaluate(model, 2, items, params, batch_size=1)["hypotheses"] == served
    assert result["num_items"] == 9 and len(result["examples"]) == 3
    assert result["examples"][0] == {
        "source": items[0].source,
        "output": served[0],
        "references": ["ref 0", "another"],
    }
    assert result["scores"] == {
        k: corpus_scores(served, [it.references for it in items])[k]
        for k in ("bleu", "chrf", "ter", "rougeL")
    }


def test_evaluate_fits_decoder_only_outputs_into_the_positions():
    model = make_model("gpt2")
    long_source = "y" * 500  # 501 tokens + a 5-token prompt: 6 positions left of 512
    result = evaluate(
        model,
        1,
        [EvalItem(long_source, ("ref",)), EvalItem("short", ("ref",))],
        GenerationParams(max_new_tokens=20),
    )
    assert result["num_items"] == 2 and result["generated_tokens"] <= 6 + 20
