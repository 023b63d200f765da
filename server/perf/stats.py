"""Statistics of a load run: rates, throughput, latency percentiles, errors by status."""

from __future__ import annotations

import math
from collections import Counter

from .loadtest.client import Outcome


def percentile(values: list[float], q: float) -> float | None:
    """Nearest-rank percentile (q in [0, 100]); None for no values."""
    if not values:
        return None
    ordered = sorted(values)
    rank = max(1, math.ceil(q / 100 * len(ordered)))
    return ordered[rank - 1]


def summarize(outcomes: list[Outcome], offered_rate: float) -> dict:
    """One run's report. Rates use the span from the first scheduled send to the last answer."""
    if not outcomes:
        return {"requests": 0}
    ok = [o for o in outcomes if o.ok]
    span = max(o.done for o in outcomes) - min(o.planned.at for o in outcomes)
    planned_span = outcomes[-1].planned.at - outcomes[0].planned.at
    ms = 1000.0

    def pct(values: list[float]) -> dict:
        return {
            f"p{q}": (None if (v := percentile(values, q)) is None else round(v, 3)) for q in (50, 95, 99)
        } | {
            "max": round(max(values), 3) if values else None,
            "mean": round(sum(values) / len(values), 3) if values else None,
        }

    errors = Counter(str(o.status) if o.status else "transport" for o in outcomes if not o.ok)
    mismatches = [o.problem for o in outcomes if o.status == 200 and not o.ok]
    return {
        "requests": len(outcomes),
        "ok": len(ok),
        "offered_rate": offered_rate,
        "planned_rate": round((len(outcomes) - 1) / planned_span, 3) if planned_span > 0 else None,
        "achieved_rate": round(len(ok) / span, 3) if span > 0 else None,
        "generated_tokens_per_s": round(sum(o.generated_tokens for o in ok) / span, 2) if span > 0 else None,
        "duration_s": round(span, 3),
        "latency_ms": pct([o.latency * ms for o in ok]),
        "queue_ms": pct([o.queue_ms for o in ok if o.queue_ms is not None]),
        "inference_ms": pct([o.inference_ms for o in ok if o.inference_ms is not None]),
        "client_lag_ms": pct([o.lag * ms for o in outcomes]),
        "batch_rows_mean": round(sum(o.batch_rows or 0 for o in ok) / len(ok), 2) if ok else None,
        "ttft_ms": pct([t * ms for o in ok if (t := o.ttft) is not None]),
        "itl_ms": pct([g * ms for o in ok for g in (o.gaps or [])]),
        "errors": dict(errors),
        "mismatches": mismatches[:10],
    }


def format_report(summary: dict) -> str:
    lat, q, lag = summary["latency_ms"], summary["queue_ms"], summary["client_lag_ms"]
    lines = [
        f"requests      {summary['requests']} sent, {summary['ok']} ok, errors {summary['errors'] or 'none'}",
        f"rate          offered {summary['offered_rate']:g}/s (plan {summary['planned_rate']}), "
        f"achieved {summary['achieved_rate']}/s over {summary['duration_s']} s",
        f"throughput    {summary['achieved_rate']} req/s, "
        f"{summary['generated_tokens_per_s']} generated tokens/s, "
        f"mean batch {summary['batch_rows_mean']} rows",
        f"latency ms    p50 {lat['p50']}  p95 {lat['p95']}  p99 {lat['p99']}  max {lat['max']}",
        f"queue ms      p50 {q['p50']}  p95 {q['p95']}  p99 {q['p99']}  max {q['max']}",
        f"client lag ms p50 {lag['p50']}  p99 {lag['p99']}  max {lag['max']}  "
        "(the load generator's own delay)",
    ]
    if summary["ttft_ms"]["p50"] is not None:
        t, g = summary["ttft_ms"], summary["itl_ms"]
        lines.append(
            f"first token ms p50 {t['p50']}  p95 {t['p95']}  p99 {t['p99']}  max {t['max']}  (streamed)"
        )
        lines.append(f"between tokens ms p50 {g['p50']}  p95 {g['p95']}  p99 {g['p99']}  max {g['max']}")
    if summary["mismatches"]:
        lines.append(f"MISMATCHED ANSWERS: {summary['mismatches']}")
    return "\n".join(lines)
