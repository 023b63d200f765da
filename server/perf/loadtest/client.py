"""Open-loop load: send each planned request at its time, whatever the server is doing."""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass

import httpx
from tqdm import tqdm

from .plan import LoadSpec, Planned, make_plan

REQUEST_ID = "x-request-id"


@dataclass
class Outcome:
    """What happened to one planned request. Times are seconds on the client's monotonic clock,
    relative to the start; latency counts from the *scheduled* time, so a late send is not hidden."""

    planned: Planned
    sent: float = 0.0
    done: float = 0.0
    status: int = 0  # 0 = transport error
    ok: bool = False
    problem: str = ""
    text: str = ""
    generated_tokens: int = 0
    queue_ms: float | None = None
    inference_ms: float | None = None
    batch_rows: int | None = None

    @property
    def latency(self) -> float:
        return self.done - self.planned.at

    @property
    def lag(self) -> float:
        """How late the client sent it: the load generator's own overhead."""
        return self.sent - self.planned.at


def check(outcome: Outcome, response: httpx.Response) -> None:
    """A 200 must be this request's answer: our tag echoed, our adapter, text present."""
    outcome.status = response.status_code
    if response.status_code != 200:
        outcome.problem = f"HTTP {response.status_code}"
        return
    try:
        body = response.json()
    except ValueError:
        outcome.problem = "200 without JSON body"
        return
    p = outcome.planned
    if response.headers.get(REQUEST_ID) != p.tag:
        outcome.problem = f"request id {response.headers.get(REQUEST_ID)!r} is not ours ({p.tag})"
    elif not isinstance(body, dict) or not isinstance(body.get("generated_text"), str):
        outcome.problem = "200 without generated_text"
    elif body.get("adapter") != p.adapter:
        outcome.problem = f"answer for adapter {body.get('adapter')!r}, asked {p.adapter!r}"
    else:
        details = body.get("details") or {}
        outcome.ok = True
        outcome.text = body["generated_text"]
        outcome.generated_tokens = int(details.get("generated_tokens", 0))
        outcome.queue_ms = details.get("queue_ms")
        outcome.inference_ms = details.get("inference_ms")
        outcome.batch_rows = details.get("batch_rows")


async def run_load(
    spec: LoadSpec, progress: bool = True, client: httpx.AsyncClient | None = None
) -> list[Outcome]:
    """Send the plan open-loop; returns one Outcome per planned request, in plan order."""
    plan = make_plan(spec)
    outcomes = [Outcome(p) for p in plan]
    own = client is None
    client = client or httpx.AsyncClient(
        base_url=spec.url,
        timeout=spec.timeout_s,
        limits=httpx.Limits(max_connections=4096, max_keepalive_connections=512),
    )
    bar = tqdm(total=len(plan), desc=f"{spec.rate:g} req/s", unit="req", disable=not progress, leave=False)
    start = time.monotonic()

    async def send(outcome: Outcome) -> None:
        p = outcome.planned
        query = {"adapter": p.adapter} if p.adapter else {}
        outcome.sent = time.monotonic() - start
        try:
            response = await client.post(
                "/generate",
                params=query,
                headers={REQUEST_ID: p.tag},
                json={"inputs": p.text, "parameters": spec.parameters},
            )
            check(outcome, response)
        except httpx.HTTPError as e:
            outcome.problem = f"{type(e).__name__}: {e}"
        outcome.done = time.monotonic() - start
        bar.update(1)

    tasks = []
    try:
        for outcome in outcomes:
            delay = outcome.planned.at - (time.monotonic() - start)
            if delay > 0:
                await asyncio.sleep(delay)
            tasks.append(asyncio.create_task(send(outcome)))
        await asyncio.gather(*tasks)
    finally:
        bar.close()
        if own:
            await client.aclose()
    return outcomes


async def verify(url: str, outcomes: list[Outcome], parameters: dict, count: int, seed: int = 0) -> list[str]:
    """Re-send ``count`` answered requests one at a time; their texts must be identical (greedy or seeded).
    Returns the problems found (empty = every checked answer belonged to its request)."""
    import random

    answered = [o for o in outcomes if o.ok]
    sample = random.Random(seed).sample(answered, min(count, len(answered)))
    problems = []
    async with httpx.AsyncClient(base_url=url, timeout=120) as client:
        for o in sample:
            p = o.planned
            r = await client.post(
                "/generate",
                params={"adapter": p.adapter} if p.adapter else {},
                json={"inputs": p.text, "parameters": parameters},
            )
            if r.status_code != 200 or r.json()["generated_text"] != o.text:
                problems.append(f"{p.tag} ({p.adapter}): under load {o.text!r}, alone {r.text[:200]!r}")
    return problems
