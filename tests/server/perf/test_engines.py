"""`inputtune bench engines` on a tiny base: every inputtune engine gives transformers' tokens, and the
step profile counts real operator calls."""

from __future__ import annotations

import pytest

from server.perf.bench import engines
from server.perf.errors import LoadTestError
from tests.conftest import TEXTS


def test_engines_agree_with_hf_and_report_per_size(t5_model):
    ids = t5_model.encode(TEXTS[:5])
    passes = {
        "hf": engines.in_process(engines.hf_engine(t5_model, 4), t5_model.base.device),
        "static": engines.in_process(engines.static_engine(t5_model, 4), t5_model.base.device),
        "continuous": engines.in_process(engines.continuous_engine(t5_model, 4), t5_model.base.device),
    }
    results = engines.measure(passes, ids, sizes=[1, 3], repeats=1, new_tokens=4)
    assert [r["rows"] for r in results] == [1, 3]
    for row in results:
        assert row["agreement"] == {"hf": 1.0, "static": 1.0, "continuous": 1.0}
        assert all(v > 0 for v in row["tokens_per_s"].values())
        assert "vs_ct2" not in row  # no CTranslate2 engine in this run


def test_engines_refuse_an_engine_that_stops_early(t5_model):
    ids = t5_model.encode(TEXTS[:2])
    short = engines.in_process(lambda rows: [[1, 2] for _ in rows], t5_model.base.device)
    with pytest.raises(LoadTestError, match="did not make 4 tokens"):
        engines.measure({"short": short}, ids, sizes=[2], repeats=1, new_tokens=4)


def test_step_profile_counts_ops_and_phases(t5_model):
    profile = engines.step_profile(t5_model, t5_model.encode(TEXTS[:3]), new_tokens=4)
    layers = t5_model.base.model.config.num_decoder_layers
    assert profile["rows"] == 3
    assert profile["ops_per_step"] >= 10 * layers  # every layer's products, norms and attention
    assert profile["admission_ms"] > 0 and profile["decoder_ms_per_step"] > 0
    assert profile["step_ms"] >= profile["decoder_ms_per_step"]


def test_prefill_profile_runs_each_budget_on_the_same_burst(t5_model):
    ids = t5_model.encode(TEXTS * 3)
    eos = t5_model.tokenizer.eos_token_id
    joined = [[t for r in ids[i : i + 4] for t in r if t != eos] + [eos] for i in range(0, 8, 4)]
    got = engines.prefill_profile(t5_model, ids, [None, 1], running=2, burst=2)
    assert [g["budget_tokens"] for g in got] == [None, 1]
    assert all(g["burst_rows"] == 2 and g["burst_tokens"] == sum(map(len, joined)) for g in got)
    assert all(g["worst_pause_ms"] >= g["median_pause_ms"] > 0 for g in got)


def test_the_report_section_says_which_targets_are_met(tmp_path):
    import json

    from server.perf.bench.report_text import engines_section

    def row(rows, cont, http, ct2):
        tps = {"hf": 1.0, "continuous": cont, "http": http, "ct2@1": ct2}
        agreement = {"continuous": 1.0, "http": 1.0, "ct2@1": 1.0}
        return {
            "rows": rows,
            "tokens_per_s": tps,
            "agreement": agreement,
            "vs_ct2": {n: round(tps[n] / ct2, 3) for n in ("hf", "continuous", "http")},
        }

    profile = {
        "ops_per_step": 100,
        "admission_ms": 10.0,
        "step_ms": 1.0,
        "decoder_ms_per_step": 0.9,
        "choose_ms_per_step": 0.1,
    }
    figures = {
        "dtype": "float32",
        "threads": 2,
        "inputs": 8,
        "new_tokens": 16,
        "results": [row(1, 70.0, 65.0, 100.0), row(32, 900.0, 500.0, 1000.0)],
        "profiles": [{"rows": 1, **profile}, {"rows": 32, **profile}],
        "prefill": [],
    }
    (tmp_path / "engines_float32.json").write_text(json.dumps(figures))
    text = "\n".join(engines_section(tmp_path))
    assert "| continuous ÷ CTranslate2 at 1 row, fp32 ≥ 0.6 | 0.70 | yes |" in text
    assert "| continuous ÷ CTranslate2 at 32 rows, fp32 ≥ 1 | 0.90 | **no** |" in text
    assert "| over HTTP within 10% of in-process at 1 row | 0.93× | yes |" in text
    assert "| over HTTP within 10% of in-process at 32 rows | 0.56× | **no** |" in text
    assert engines_section(tmp_path / "none") == []  # no measurement, no section


def test_prompt_lengths_bench_serves_every_setting_and_times_it(model_dir, tmp_path):
    """`inputtune bench prompt-lengths` on the tiny base: a live server, one adapter per (kind, length),
    every request generating exactly the asked tokens (a request that stopped early would be a 200
    with fewer tokens, so the server's own token count is checked too)."""
    from server.perf.bench import prompts
    from training.data import load_task
    from training.errors import DataNotFoundError

    try:
        load_task("e2e", "test", None, limit=2)
    except DataNotFoundError as e:
        pytest.skip(f"real data not present ({e})")
    record = prompts.measure(str(model_dir / "base"), [0, 3], rows=2, new_tokens=3, repeats=1,
                             log=tmp_path / "server.log")  # fmt: skip
    grid = [(x["method"], x["prompt_length"]) for x in record["settings"]]
    assert grid == [("it", 0), ("it", 3), ("pt", 3)]
    for x in record["settings"]:
        assert x["tokens_per_s_2_rows"] > 0 and x["latency_1_row_s"] > 0
        assert len(x["seconds"]["1"]) == len(x["seconds"]["2"]) == 1
    assert record["command"].startswith("inputtune bench prompt-lengths --lengths 0,3")
