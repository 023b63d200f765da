"""Rate sweeps: find saturation, draw throughput and latency against offered load."""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import Callable
from pathlib import Path

from ..stats import summarize
from .client import run_load
from .plan import LoadSpec


def saturated(summary: dict) -> bool:
    """The server no longer keeps up: it answers clearly less than offered, or refuses/fails requests."""
    achieved = summary.get("achieved_rate") or 0.0
    failed = summary["requests"] - summary["ok"]
    return achieved < 0.85 * summary["offered_rate"] or failed > 0.01 * summary["requests"]


def sweep(
    spec: LoadSpec,
    rates: list[float] | None,
    progress: bool = True,
    max_steps: int = 8,
    log: Callable[[str], None] = print,
) -> list[dict]:
    """Run each rate (or double from spec.rate until saturated); one summary per rate."""
    results = []
    planned = list(rates) if rates else [spec.rate * 2**i for i in range(max_steps)]
    for rate in planned:
        step = dataclasses.replace(spec, rate=rate)
        summary = summarize(asyncio.run(run_load(step, progress)), rate)
        results.append(summary)
        log(
            f"offered {rate:g}/s -> achieved {summary['achieved_rate']}/s, "
            f"p99 {summary['latency_ms']['p99']} ms, "
            f"errors {summary['errors'] or 'none'}"
        )
        if not rates and saturated(summary):
            break
    return results


def plot(results: list[dict], out_dir: Path, title: str) -> list[Path]:
    """throughput-vs-offered and latency-vs-offered PNGs."""
    offered = [r["offered_rate"] for r in results]
    throughput = [
        (offered, {"linestyle": "--", "color": "grey", "label": "offered"}),
        ([r["achieved_rate"] for r in results], {"marker": "o", "label": "achieved"}),
    ]
    latency = [
        ([r["latency_ms"][key] for r in results], {"marker": marker, "label": key})
        for key, marker in (("p50", "o"), ("p99", "s"))
    ]
    out_dir.mkdir(parents=True, exist_ok=True)
    return [
        _figure(out_dir / "loadtest_throughput.png", title, offered, throughput, "throughput (req/s)"),
        _figure(out_dir / "loadtest_latency.png", title, offered, latency, "latency (ms)", log_y=True),
    ]


def _figure(path: Path, title: str, x: list, series: list, ylabel: str, log_y: bool = False) -> Path:
    """One PNG of ``series`` [(values, plot style)] against the offered load."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5, 3.5))
    for values, style in series:
        ax.plot(x, values, **style)
    ax.set_xlabel("offered load (req/s)")
    ax.set_ylabel(ylabel)
    if log_y:
        ax.set_yscale("log")
    ax.set_title(title)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
