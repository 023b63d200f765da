"""The study's pieces that need no training: its statistics, the E2E variants, and the report built
from JSON alone."""

from __future__ import annotations

import json

import pytest

from training.study.report import write_report
from training.study.stats import bootstrap_scores, ranks, spearman, spearman_interval
from training.study.tasks import e2e_opaque, e2e_plain, e2e_slots

MR = "name[The Eagle], eatType[coffee shop], food[French], customer rating[5 out of 5]"


def test_ranks_share_ties():
    assert ranks([10, 20, 20, 5]).tolist() == [2.0, 3.5, 3.5, 1.0]


def test_spearman_known_values():
    assert spearman([1, 2, 3, 4], [10, 20, 30, 40]) == pytest.approx(1.0)
    assert spearman([1, 2, 3, 4], [4, 3, 2, 1]) == pytest.approx(-1.0)
    # d = rank differences (0, 0, 1, -1, 0): rho = 1 - 6·2 / (5·24) = 0.9
    assert spearman([1, 2, 3, 4, 5], [1, 2, 4, 3, 5]) == pytest.approx(0.9)
    assert spearman([1, 1, 1], [1, 2, 3]) != spearman([1, 1, 1], [1, 2, 3])  # nan: constant side


def test_spearman_interval_contains_rho():
    s = spearman_interval([1, 2, 3, 4, 5, 6], [2, 1, 4, 3, 6, 5], samples=300)
    assert s["low"] <= s["rho"] <= s["high"] and s["n"] == 6


def test_bootstrap_scores_bracket_the_corpus_score():
    hyps = ["the cat sat on the mat", "a dog ran", "hello there world"]
    refs = [["the cat sat on the mat"], ["a dog ran home", "the dog ran"], ["hello world"]]
    out = bootstrap_scores(hyps, refs, samples=200)
    from training.common.metrics import corpus_scores

    plain = corpus_scores(hyps, refs)
    for metric in ("bleu", "chrf", "ter"):
        assert out[metric]["score"] == pytest.approx(plain[metric])
        assert out[metric]["low"] <= out[metric]["score"] <= out[metric]["high"]


def test_e2e_variants():
    assert e2e_slots(MR)[3] == ("customer rating", "5 out of 5")
    opaque = e2e_opaque(MR)
    assert "name" not in opaque and "zq1[The Eagle]" in opaque and opaque == e2e_opaque(MR)
    assert e2e_plain(MR) == (
        "the name is The Eagle; the type of place is coffee shop; the food is French; "
        "the customer rating is 5 out of 5."
    )


def _run(task, method, bleu, chrf):
    iv = {
        m: {"score": v, "low": v - 1, "high": v + 1}
        for m, v in (("bleu", bleu), ("chrf", chrf), ("ter", 90.0))
    }
    return {
        "task": task,
        "method": method,
        "prompt_length": 20,
        "settings": {
            "steps": 10,
            "batch_size": 2,
            "prompt_length": 20,
            "seed": 0,
            "max_new_tokens": 8,
            "test_items": 3,
        },
        "trainable_parameters": 100,
        "train_s": 1.0,
        "eval_s": 1.0,
        "scores": {"bleu": bleu, "chrf": chrf, "ter": 90.0, "rougeL": 20.0},
        "intervals": iv,
        "hypotheses": ["x"],
    }


def test_report_from_json_alone(tmp_path):
    results = tmp_path / "study"
    (results / "runs").mkdir(parents=True)
    fam = {"e2e": 5.0, "fr-en": 30.0, "e2e-plain": 40.0, "de-en": 2.0}
    for i, task in enumerate(fam):
        for method, scale in (("pt", 0.2 + 0.1 * i), ("it", 0.5), ("ft", 1.0)):
            run = _run(task, method, 40 * scale, 50 * scale)
            (results / "runs" / f"{task}.{method}.json").write_text(json.dumps(run))
    (results / "familiarity.json").write_text(
        json.dumps({"tasks": {t: {"familiarity": f} for t, f in fam.items()}})
    )
    out = write_report(results)
    text = out.read_text()
    assert out == tmp_path / "study.md"
    assert "Runs finished: **12 of 30**" in text
    assert "| e2e | 5.0 | prompt-tuning | 8.0 [7.0, 9.0]" in text
    # familiarity order de-en < e2e < fr-en < e2e-plain; PT/FT ranks 4, 1, 2, 3: rho = 1 - 6·12/60 = -0.2
    assert "PT/FT chrF: -0.20" in text
    assert "IT/FT chrF: n/a (one side is constant, n=4)" in text
    assert (results / "familiarity_vs_relative.png").is_file() and (results / "scores.png").is_file()
    assert "Part 3" in text and "Not computed yet" in text


def test_paired_bootstrap_names_and_p_value():
    from training.study.stats import paired_bootstrap

    refs = [["the cat sat on the mat"], ["a dog ran home"], ["hello world"], ["good morning to you"]]
    base = ["x y z", "q", "w", "e r"]
    out = paired_bootstrap(base, [r[0] for r in refs], refs, samples=100)
    assert out["bleu"]["system"] == pytest.approx(100.0) and out["bleu"]["baseline"] < 5
    assert 0 < out["chrf"]["p_value"] <= 0.05
