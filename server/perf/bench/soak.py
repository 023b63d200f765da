"""`inputtune bench soak`: a server under steady load while an adapter is uploaded, replaced and
deleted over and over. Every answer is checked; the only errors allowed are the 404s of requests
for the churned adapter while it is deleted. The server's resident memory and open file descriptors
are sampled (from /proc, the server must run on this machine) and must stay flat.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import threading
import time
from collections import Counter
from dataclasses import replace
from pathlib import Path

import httpx

from ..loadtest.client import run_load
from ..loadtest.plan import LoadSpec
from ..stats import summarize
from ..workload import make_inputs

CHURNED = "soak-churn"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--url", default="http://127.0.0.1:8000")
    parser.add_argument("--pid", type=int, required=True, help="the server's process id (for memory and fds)")
    parser.add_argument("--admin-key", required=True, help="the server's admin key (for the churn)")
    parser.add_argument("--adapter-file", required=True, help="a valid adapter file to upload and replace")
    parser.add_argument("--other-adapter-file", help="a second one, for the replacements (default: the same)")
    parser.add_argument("--adapters", required=True, help="comma-separated steady adapters to load")
    parser.add_argument("--duration", type=float, default=180.0)
    parser.add_argument("--rate", type=float, default=10.0)
    parser.add_argument("--new-tokens", type=int, default=8)
    parser.add_argument("--json", help="also write the figures here")
    parser.add_argument("--plot", help="also draw resident memory and open files over time here (.png)")


def process_sample(pid: int) -> tuple[float, int]:
    """(resident MB, open file descriptors) of a process."""
    status = Path(f"/proc/{pid}/status").read_text()
    rss_kb = next(int(line.split()[1]) for line in status.splitlines() if line.startswith("VmRSS:"))
    return rss_kb / 1024, len(list(Path(f"/proc/{pid}/fd").iterdir()))


def soak(
    spec: LoadSpec,
    pid: int,
    admin_key: str,
    files: list[bytes],
    duration_s: float,
    churn_every_s: float = 0.3,
) -> dict:
    """Load ``spec`` (its adapters plus the churned one) for ``duration_s`` while the churned adapter is
    uploaded, replaced and deleted in turn; returns answers by status, churn actions and resources."""
    stop = threading.Event()
    actions: Counter = Counter()
    samples: list[tuple[float, float, int]] = []

    def churn() -> None:
        headers = {"Authorization": f"Bearer {admin_key}"}
        with httpx.Client(base_url=spec.url, timeout=30, headers=headers) as client:
            step = 0
            while not stop.is_set():
                if step % 3 == 2:
                    r = client.delete(f"/adapters/{CHURNED}")
                    actions[f"delete {r.status_code}"] += 1
                else:
                    r = client.put(f"/adapters/{CHURNED}", content=files[step % len(files)])
                    actions[f"upload {r.status_code}"] += 1
                step += 1
                stop.wait(churn_every_s)

    def sample() -> None:
        start = time.monotonic()
        while not stop.is_set():
            rss, fds = process_sample(pid)
            samples.append((round(time.monotonic() - start, 1), round(rss, 1), fds))
            stop.wait(1.0)

    threads = [threading.Thread(target=churn), threading.Thread(target=sample)]
    for t in threads:
        t.start()
    try:
        outcomes = asyncio.run(
            run_load(replace(spec, adapters=[*spec.adapters, CHURNED], duration_s=duration_s), progress=False)
        )
    finally:
        stop.set()
        for t in threads:
            t.join(30)
        # leave the server's adapter folder as it was
        httpx.delete(
            f"{spec.url}/adapters/{CHURNED}", headers={"Authorization": f"Bearer {admin_key}"}, timeout=30
        )
    summary = summarize(outcomes, spec.rate)
    statuses = Counter((o.planned.adapter == CHURNED, o.status) for o in outcomes)
    unexpected = [
        o.problem for o in outcomes if not o.ok and not (o.planned.adapter == CHURNED and o.status == 404)
    ]
    warm = [s for s in samples if s[0] >= min(5.0, duration_s / 4)] or samples  # after start-up costs
    return {
        "requests": len(outcomes),
        "ok": summary["ok"],
        "by_status": {
            f"{'churned' if churned else 'steady'} {status}": n for (churned, status), n in statuses.items()
        },
        "unexpected_errors": unexpected[:20],
        "mismatches": summary["mismatches"],
        "churn": dict(actions),
        "rss_mb": {"first": warm[0][1], "last": warm[-1][1], "max": max(s[1] for s in warm)},
        "fds": {"first": warm[0][2], "last": warm[-1][2], "max": max(s[2] for s in warm)},
        "samples": samples,
        "duration_s": duration_s,
        "latency_ms": summary["latency_ms"],
    }


def plot(figures: dict, path: Path) -> None:
    """Resident memory and open file descriptors of the server over the soak."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    t, rss, fds = zip(*figures["samples"], strict=True)
    fig, (top, bottom) = plt.subplots(2, 1, figsize=(7, 4.5), sharex=True)
    top.plot(t, rss)
    top.set_ylabel("resident MB")
    top.set_ylim(0, max(rss) * 1.2)
    bottom.plot(t, fds, color="tab:orange")
    bottom.set_ylabel("open files")
    bottom.set_ylim(0, max(fds) * 1.5)
    bottom.set_xlabel("seconds")
    churn = ", ".join(f"{n} {k}" for k, n in sorted(figures["churn"].items()))
    top.set_title(f"soak: {figures['requests']} requests, adapter churn: {churn}", fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def run(args: argparse.Namespace) -> int:
    files = [Path(args.adapter_file).read_bytes()]
    if args.other_adapter_file:
        files.append(Path(args.other_adapter_file).read_bytes())
    tokens = {"max_new_tokens": args.new_tokens, "min_new_tokens": args.new_tokens}
    spec = LoadSpec(
        args.url,
        rate=args.rate,
        duration_s=args.duration,
        adapters=list(args.adapters.split(",")),
        inputs=make_inputs(64, 96, seed=4),
        parameters=tokens,
        timeout_s=60,
    )
    figures = soak(spec, args.pid, args.admin_key, files, args.duration)
    print(json.dumps({k: v for k, v in figures.items() if k != "samples"}, indent=1))
    if args.json:
        Path(args.json).write_text(json.dumps(figures, indent=1))
    if args.plot:
        plot(figures, Path(args.plot))
    return 0 if not figures["unexpected_errors"] and not figures["mismatches"] else 1
