"""Open-loop load: send each planned request at its time, whatever the server is doing."""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass

import httpx
from tqdm import tqdm

from .apis import Answer, Api, make_api
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
    first_token: float | None = None  # streamed: when the first token arrived (client clock, from the start)
    gaps: list[float] | None = None  # streamed: seconds between consecutive token events
    retry_after: str | None = None  # a refusal's Retry-After header, as sent

    @property
    def latency(self) -> float:
        return self.done - self.planned.at

    @property
    def ttft(self) -> float | None:
        """Time to first token, from the scheduled send (streamed requests)."""
        return None if self.first_token is None else self.first_token - self.planned.at

    @property
    def lag(self) -> float:
        """How late the client sent it: the load generator's own overhead."""
        return self.sent - self.planned.at


def accept(outcome: Outcome, response: httpx.Response, api: Api, answer: Answer) -> None:
    """A 200 must be this request's answer: our tag echoed, our adapter, text present."""
    p = outcome.planned
    expected = api.expected_adapter(p.adapter)
    if response.headers.get(REQUEST_ID) != p.tag:
        outcome.problem = f"request id {response.headers.get(REQUEST_ID)!r} is not ours ({p.tag})"
    elif answer.adapter != expected:
        outcome.problem = f"answer for adapter {answer.adapter!r}, asked {expected!r}"
    else:
        outcome.ok = True
        outcome.text = answer.text
        outcome.generated_tokens = answer.generated_tokens
        outcome.queue_ms = answer.details.get("queue_ms")
        outcome.inference_ms = answer.details.get("inference_ms")
        outcome.batch_rows = answer.details.get("batch_rows")


def check(outcome: Outcome, response: httpx.Response, api: Api) -> None:
    """A non-streamed answer."""
    outcome.status = response.status_code
    if response.status_code != 200:
        outcome.problem = f"HTTP {response.status_code}"
        outcome.retry_after = response.headers.get("retry-after")
        return
    try:
        answer = api.answer(response.json())
    except ValueError as e:
        outcome.problem = str(e) or "200 without a JSON answer"
        return
    accept(outcome, response, api, answer)


async def _streamed(client: httpx.AsyncClient, api: Api, outcome: Outcome, request, start: float) -> None:
    """Send one request streamed; record its tokens' arrival times and check its answer."""
    p = outcome.planned
    pieces: list[str] = []
    times: list[float] = []
    answer = None
    async with client.stream(
        "POST", request.path, params=request.query, headers={REQUEST_ID: p.tag}, json=request.body
    ) as response:
        outcome.status = response.status_code
        if response.status_code != 200:
            await response.aread()
            outcome.problem = f"HTTP {response.status_code}"
            outcome.retry_after = response.headers.get("retry-after")
            return
        try:
            async for line in response.aiter_lines():
                if not line.startswith("data:") or line[5:].strip() == "[DONE]":
                    continue
                text, last = api.event(line[5:])
                if last is not None:
                    answer = last
                if text or last is None:  # a token event (the usage chunk carries none)
                    times.append(time.monotonic() - start)
                pieces.append(text)
        except ValueError as e:
            outcome.problem = str(e)
            return
    streamed = "".join(pieces)
    if answer is None:
        outcome.problem = "the stream ended without its last event"
    elif answer.text and answer.text != streamed:
        outcome.problem = f"streamed text {streamed!r} differs from the answer {answer.text!r}"
    else:
        answer.text = streamed
        if answer.adapter is None:  # the native/TGI stream does not repeat the adapter
            answer.adapter = api.expected_adapter(p.adapter)
        outcome.first_token = times[0] if times else None
        outcome.gaps = [b - a for a, b in zip(times, times[1:], strict=False)]
        accept(outcome, response, api, answer)


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
    api = make_api(spec.api, spec.parameters, spec.base_id)
    start = time.monotonic()

    async def send(outcome: Outcome) -> None:
        p = outcome.planned
        request = api.request(p.adapter, p.text, spec.stream)
        outcome.sent = time.monotonic() - start
        try:
            if spec.stream:
                await _streamed(client, api, outcome, request, start)
            else:
                response = await client.post(
                    request.path, params=request.query, headers={REQUEST_ID: p.tag}, json=request.body
                )
                check(outcome, response, api)
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


async def verify(spec: LoadSpec, outcomes: list[Outcome], count: int) -> list[str]:
    """Re-send ``count`` answered requests one at a time through the same front end, not streamed;
    their texts must be identical (greedy or seeded). Returns the problems found (empty = every
    checked answer belonged to its request)."""
    import random

    api = make_api(spec.api, spec.parameters, spec.base_id)
    answered = [o for o in outcomes if o.ok]
    sample = random.Random(spec.seed).sample(answered, min(count, len(answered)))
    problems = []
    async with httpx.AsyncClient(base_url=spec.url, timeout=120) as client:
        for o in sample:
            p = o.planned
            request = api.request(p.adapter, p.text, stream=False)
            r = await client.post(request.path, params=request.query, json=request.body)
            alone = api.answer(r.json()).text if r.status_code == 200 else None
            if alone != o.text:
                problems.append(f"{p.tag} ({p.adapter}): under load {o.text!r}, alone {r.text[:200]!r}")
    return problems
