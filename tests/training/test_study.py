"""The study's pieces that need no training: its statistics, the E2E variants, and the report built
from JSON alone."""

from __future__ import annotations

import json

import pytest

from training.study.report import write_report
from training.study.runs import LEARNING_RATES, SWEEP
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
        "learning_rates": dict(LEARNING_RATES[method]),
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


def test_run_specs_name_their_settings_and_the_plan_orders_them():
    from training.study.runs import PROMPT_LENGTHS, SWEEP, SWEEP_TASKS, RunSpec, study_plan

    assert RunSpec("e2e", "pt").name == "e2e.pt" and RunSpec("e2e", "pt").needs_dev
    assert RunSpec("dart", "it").needs_dev  # every task's default run is part of its sweep
    assert RunSpec("e2e", "it", 5).name == "e2e.it.p5" and not RunSpec("e2e", "it", 5).needs_dev
    swept = RunSpec("fr-en", "it", None, (("lr_prompt", 0.3), ("lr_adapter", 0.003)))
    assert swept.name == "fr-en.it.lr-prompt0.3-adapter0.003"
    assert swept.learning_rates == {"lr_prompt": 0.3, "lr_adapter": 0.003} and swept.needs_dev
    plan = study_plan(("e2e", "fr-en", "dart"))
    names = [s.name for s in plan]
    assert len(names) == len(set(names))
    assert names[:9] == [f"{t}.{m}" for t in ("e2e", "fr-en", "dart") for m in ("pt", "it", "ft")]
    swept = len([t for t in SWEEP_TASKS if t in ("e2e", "fr-en", "dart")])
    assert len(plan) == 9 + sum(map(len, PROMPT_LENGTHS.values())) + swept * sum(map(len, SWEEP.values()))
    assert [s.task for s in plan if s.lr][:5] == ["e2e"] * 5  # sweeps in SWEEP_TASKS order
    assert "e2e.it.p0" in names and "dart.pt.p5" not in names


def _write_run(results, name, record):
    (results / "runs" / f"{name}.json").write_text(json.dumps(record))


def test_selection_takes_the_best_dev_score_and_keeps_part_4_apart(tmp_path):
    from training.study.runs import select_runs

    results = tmp_path / "study"
    (results / "runs").mkdir(parents=True)
    default = _run("e2e", "pt", 3.0, 12.0) | {
        "learning_rates": {"lr_prompt": 0.3},
        "dev": {"scores": {"bleu": 2.5, "chrf": 14.0}},
    }
    better = _run("e2e", "pt", 2.0, 11.0) | {
        "learning_rates": {"lr_prompt": 1.0},
        "lr_default": False,
        "dev": {"scores": {"bleu": 1.0, "chrf": 15.5}},
    }
    worse = _run("e2e", "pt", 9.0, 30.0) | {
        "learning_rates": {"lr_prompt": 0.1},
        "lr_default": False,
        "dev": {"scores": {"bleu": 6.0, "chrf": 9.0}},
    }
    # the other methods' settings, so the e2e sweep is complete (dev chrF: the default wins for IT and FT)
    others = {
        f"e2e.{m}.lr-{i}": _run("e2e", m, 1.0, 1.0)
        | {"learning_rates": lr, "lr_default": False, "dev": {"scores": {"bleu": 0.0, "chrf": 1.0}}}
        for m in ("it", "ft")
        for i, lr in enumerate(SWEEP[m])
    }
    others |= {f"e2e.{m}": _run("e2e", m, 5.0, 20.0) | {"dev": {"scores": {"bleu": 5.0, "chrf": 20.0}}}
               for m in ("it", "ft")}  # fmt: skip
    # fr-en: only prompt-tuning's sweep ran: incomplete, so every method reports its default
    others |= {"fr-en.pt": _run("fr-en", "pt", 5.0, 20.0) | {"dev": {"scores": {"bleu": 1.0, "chrf": 10.0}}},
               "fr-en.pt.lr-x": _run("fr-en", "pt", 9.0, 30.0) | {"learning_rates": {"lr_prompt": 1.0},
               "lr_default": False, "dev": {"scores": {"bleu": 9.0, "chrf": 30.0}}}}  # fmt: skip
    for name, rec in others.items():
        _write_run(results, name, rec)
    short = _run("e2e", "pt", 1.0, 5.0) | {"prompt_length": 5}
    plain = _run("e2e-plain", "pt", 4.0, 8.0)  # "e2e-plain.pt" is not a prompt-length run
    for name, rec in (("e2e.pt", default), ("e2e.pt.lr-prompt1", better), ("e2e.pt.lr-prompt0.1", worse),
                      ("e2e.pt.p5", short), ("e2e-plain.pt", plain)):  # fmt: skip
        _write_run(results, name, rec)
    chosen = select_runs(results)
    picked = chosen["selected"]["e2e"]["pt"]
    # the best dev chrF wins even though another setting has the better test score: test never selects
    assert picked["learning_rates"] == {"lr_prompt": 1.0} and picked["selected_from"] == 3
    assert chosen["selected"]["e2e-plain"]["pt"]["scores"]["chrf"] == 8.0
    assert sorted(chosen["prompt"]["pt"]) == [5, 20] and chosen["prompt"]["pt"][20]["scores"]["chrf"] == 12.0
    assert len(chosen["sweep"]["e2e"]["pt"]) == 3
    assert (
        chosen["selected"]["e2e"]["it"].get("lr_default", True)
        and chosen["selected"]["e2e"]["it"]["selected_from"] == 3
    )
    assert chosen["selected"]["e2e"]["it"]["scores"]["chrf"] == 20.0
    assert chosen["selected"]["fr-en"]["pt"]["scores"]["chrf"] == 20.0  # incomplete sweep: the default

    text = write_report(results).read_text()
    assert "| e2e | n/a | prompt-tuning | 2.0 [1.0, 3.0]" in text and "(best dev of 3)" in text
    assert "| e2e | prompt-tuning | **prompt 1** | 1.0 | 15.5 | 2.0 | 11.0 |" in text
    assert "| prompt-tuning | 5 | 100 | 1.0 [0.0, 2.0]" in text
    assert "it chose another setting for" in text and "e2e PT (prompt 1)" in text
    assert "Sweep finished on 1 of 10 tasks: e2e." in text
    assert "part 1 reports every method's default there: fr-en" in text


def test_report_renders_the_serving_cost_of_prompt_lengths(tmp_path):
    from server.perf.bench.prompts import adapter_grid

    results = tmp_path / "study"
    (results / "runs").mkdir(parents=True)
    grid = adapter_grid([0, 5, 20, 100])
    assert ("it", 0) in grid and ("pt", 20) in grid and ("pt", 0) not in grid
    settings = [
        {
            "method": m,
            "prompt_length": n,
            "latency_1_row_s": 0.1,
            "tokens_per_s_1_row": 100.0,
            "tokens_per_s_8_rows": 800.0 / (1 + n / 50),
        }  # fmt: skip
        for m, n in grid
    ]
    record = {"rows": 8, "new_tokens": 16, "repeats": 3, "input_tokens_mean": 40.0, "settings": settings,
              "command": "python -m training.study throughput", "measured": "now"}  # fmt: skip
    (results / "prompt_throughput.json").write_text(json.dumps(record))
    for n in (5, 20):
        _write_run(
            results,
            f"e2e.it{'' if n == 20 else f'.p{n}'}",
            _run("e2e", "it", 5.0, 10.0 + n) | {"prompt_length": n},
        )
    text = write_report(results).read_text()
    assert "| input-tuning | 100 | 100 | 100 | 267 | 0.33× |" in text
    assert "A 100-vector prompt keeps 33% of the throughput" in text and "3.5× longer" in text
    assert "best test chrF at prompt length 20" in text
    assert (results / "prompt_length.png").is_file()
