"""The load tester through every front end, streamed and not, against a live server: every answer is
checked as its request's, and re-sent alone it is the same."""

from __future__ import annotations

import asyncio

import pytest

from server.cli.loadtest import base_model_id
from server.perf.loadtest.client import run_load, verify
from server.perf.loadtest.plan import LoadSpec
from server.perf.stats import summarize
from tests.conftest import TEXTS


@pytest.mark.parametrize("api", ["native", "tgi", "openai"])
def test_every_front_end_streamed_and_not(live, api):
    with live() as server:
        spec = LoadSpec(
            server.url,
            rate=20.0,
            duration_s=0,
            max_requests=8,
            adapters=["e2e", "fr-en", None],
            inputs=TEXTS[:6],
            parameters={"max_new_tokens": 8, "min_new_tokens": 8},
            seed=1,
            api=api,
            base_id=base_model_id(server.url) if api == "openai" else None,
        )
        for stream in (False, True):
            run = LoadSpec(**{**spec.__dict__, "stream": stream})
            outcomes = asyncio.run(run_load(run, progress=False))
            summary = summarize(outcomes, run.rate)
            assert summary["ok"] == 8, [o.problem for o in outcomes]
            assert all(o.generated_tokens == 8 for o in outcomes)
            assert asyncio.run(verify(run, outcomes, 4)) == []
            if stream:
                assert summary["ttft_ms"]["p50"] is not None and summary["itl_ms"]["p50"] is not None
                assert all(len(o.gaps) >= 6 for o in outcomes)  # tokens came one by one
                assert all(o.ttft <= o.latency for o in outcomes)
            else:
                assert summary["ttft_ms"]["p50"] is None
