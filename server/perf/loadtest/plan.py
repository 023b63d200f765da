"""What a load test sends: open-loop arrival times, Zipf-distributed adapters, inputs."""

from __future__ import annotations

import random
from dataclasses import dataclass, field

from ..errors import LoadTestError


@dataclass(frozen=True)
class Planned:
    """One request of the plan. ``at`` is seconds after the start at which it must be sent."""

    index: int
    at: float
    adapter: str | None
    text: str
    tag: str


@dataclass
class LoadSpec:
    url: str
    rate: float  # requests per second offered
    duration_s: float
    max_requests: int | None = None
    adapters: list[str | None] = field(default_factory=lambda: [None])
    zipf_a: float = 1.0
    inputs: list[str] = field(default_factory=lambda: ["hello"])
    parameters: dict = field(default_factory=dict)
    poisson: bool = True
    seed: int = 0
    timeout_s: float = 120.0
    api: str = "native"  # native | tgi | openai (apis.py)
    stream: bool = False  # streamed answers: time to first token and between tokens are measured
    base_id: str | None = None  # the base model's id on the OpenAI routes (--api openai)

    def __post_init__(self) -> None:
        if self.rate <= 0:
            raise LoadTestError(f"rate must be > 0 requests/s, got {self.rate}")
        if self.duration_s <= 0 and not self.max_requests:
            raise LoadTestError("give a positive --duration or --requests")
        if not self.adapters:
            raise LoadTestError("no adapters to draw from")
        if not self.inputs:
            raise LoadTestError("no inputs to send")
        if self.zipf_a < 0:
            raise LoadTestError(f"zipf exponent must be >= 0 (0 = uniform), got {self.zipf_a}")


def zipf_weights(n: int, a: float) -> list[float]:
    """P(k) proportional to 1 / k^a for ranks k = 1..n (a = 0 is uniform)."""
    raw = [1.0 / (k**a) for k in range(1, n + 1)]
    total = sum(raw)
    return [w / total for w in raw]


def make_plan(spec: LoadSpec) -> list[Planned]:
    """Arrival times (Poisson or fixed-rate) up to the duration or request count; deterministic per seed."""
    rng = random.Random(spec.seed)
    weights = zipf_weights(len(spec.adapters), spec.zipf_a)
    plan: list[Planned] = []
    t = 0.0
    limit = spec.max_requests if spec.max_requests else float("inf")
    while len(plan) < limit:
        t += rng.expovariate(spec.rate) if spec.poisson else (1.0 / spec.rate if plan else 0.0)
        if spec.duration_s > 0 and t > spec.duration_s:
            break
        i = len(plan)
        adapter = rng.choices(spec.adapters, weights)[0]
        text = spec.inputs[rng.randrange(len(spec.inputs))]
        plan.append(Planned(i, t, adapter, text, f"lt-{spec.seed}-{i}"))
    return plan
