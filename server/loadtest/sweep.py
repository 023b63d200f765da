"""Rate sweeps: find saturation, draw throughput and latency against offered load."""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import Callable
from pathlib import Path

from .client import run_load
from .plan import LoadSpec
from .stats import summarize


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
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    out_dir.mkdir(parents=True, exist_ok=True)
    offered = [r["offered_rate"] for r in results]
    paths = []
    fig, ax = plt.subplots(figsize=(5, 3.5))
    ax.plot(offered, offered, "--", color="grey", label="offered")
    ax.plot(offered, [r["achieved_rate"] for r in results], "o-", label="achieved")
    ax.set_xlabel("offered load (req/s)")
    ax.set_ylabel("throughput (req/s)")
    ax.set_title(title)
    ax.legend()
    fig.tight_layout()
    paths.append(out_dir / "loadtest_throughput.png")
    fig.savefig(paths[-1], dpi=110)
    plt.close(fig)
    fig, ax = plt.subplots(figsize=(5, 3.5))
    for key, style in (("p50", "o-"), ("p99", "s-")):
        ax.plot(offered, [r["latency_ms"][key] for r in results], style, label=key)
    ax.set_xlabel("offered load (req/s)")
    ax.set_ylabel("latency (ms)")
    ax.set_yscale("log")
    ax.set_title(title)
    ax.legend()
    fig.tight_layout()
    paths.append(out_dir / "loadtest_latency.png")
    fig.savefig(paths[-1], dpi=110)
    plt.close(fig)
    return paths
