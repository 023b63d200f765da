"""Prometheus metrics of one app (its own registry, so tests can build many apps)."""

from __future__ import annotations

import threading
import time

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120)
SIZE_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512)
OTHER = "_other"
BASE = "_base"


class Metrics:
    """Everything a load test needs to explain its figures."""

    def __init__(self, max_adapter_labels: int = 100) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.requests = Counter(
            "inputtune_requests_total", "HTTP generate requests", ["adapter", "status"], registry=r
        )
        self.latency = Histogram(
            "inputtune_request_seconds",
            "Generate request latency",
            ["adapter", "status"],
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.queue_depth = Gauge("inputtune_queue_rows", "Rows waiting for the device", registry=r)
        self.queue_time = Histogram(
            "inputtune_queue_seconds",
            "Time a row waited before its batch ran",
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.inference_time = Histogram(
            "inputtune_batch_seconds",
            "Time the device spent on one batch",
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.batch_rows = Histogram(
            "inputtune_batch_rows", "Rows per batch", buckets=SIZE_BUCKETS, registry=r
        )
        self.batch_adapters = Histogram(
            "inputtune_batch_adapters",
            "Distinct adapters per batch (base included)",
            buckets=SIZE_BUCKETS,
            registry=r,
        )
        self.batches = Counter("inputtune_batches_total", "Batches run", ["outcome"], registry=r)
        self.cache = Counter(
            "inputtune_adapter_cache_events_total",
            "Adapter cache hits, misses, evictions",
            ["tier", "event"],
            registry=r,
        )
        self.cancelled_rows = Counter(
            "inputtune_cancelled_rows_total",
            "Rows dropped because their caller went away (disconnected, timed out), by where they were",
            ["stage"],
            registry=r,
        )
        self.rejected_rows = Counter(
            "inputtune_rejected_rows_total",
            "Rows refused at the door (429): overloaded (expected wait above max_queue_wait_s) or queue_full",
            ["reason"],
            registry=r,
        )
        self.time_to_first_token = Histogram(
            "inputtune_time_to_first_token_seconds",
            "Streamed requests: from arrival to the first token sent",
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        # What adapter-aware routers scrape (the Gateway API inference extension's model-server
        # protocol): queue and batch occupancy, and which adapters are running and waiting.
        self.requests_waiting = Gauge("inputtune_requests_waiting", "Rows queued for the device", registry=r)
        self.requests_running = Gauge("inputtune_requests_running", "Rows on the device", registry=r)
        self.adapter_info = Gauge(
            "inputtune_adapter_requests_info",
            "Adapters of the running and the waiting rows (comma-separated, bounded by "
            "metrics_max_adapter_labels); the value is the time of the reading",
            ["running_adapters", "waiting_adapters", "max_adapters"],
            registry=r,
        )
        self.generated_tokens = Counter("inputtune_generated_tokens_total", "Tokens generated", registry=r)
        self.input_tokens = Counter("inputtune_input_tokens_total", "Input tokens processed", registry=r)
        self._max_labels = max_adapter_labels
        self._labels: set[str] = set()
        self._lock = threading.Lock()

    def adapter_label(self, name: str | None) -> str:
        """Bounded label cardinality: the first ``max_adapter_labels`` names, then '_other'."""
        if name is None:
            return BASE
        with self._lock:
            if name in self._labels:
                return name
            if len(self._labels) < self._max_labels:
                self._labels.add(name)
                return name
        return OTHER

    def observe_request(self, adapter: str | None, status: int, seconds: float) -> None:
        label = self.adapter_label(adapter)
        self.requests.labels(label, str(status)).inc()
        self.latency.labels(label, str(status)).observe(seconds)

    def set_occupancy(self, running: list[str | None], waiting: list[str | None], max_adapters: int) -> None:
        """Rows and adapters on the device and in the queue (names; None = the plain base)."""
        self.requests_running.set(len(running))
        self.requests_waiting.set(len(waiting))

        def names(rows: list[str | None]) -> str:
            distinct = sorted({n for n in rows if n is not None})
            return ",".join(distinct[: self._max_labels])

        self.adapter_info.clear()  # one label set at a time: no stale series, bounded cardinality
        self.adapter_info.labels(names(running), names(waiting), str(max_adapters)).set(time.time())

    def cache_event(self, tier: str, event: str) -> None:
        self.cache.labels(tier, event).inc()

    def render(self) -> bytes:
        return generate_latest(self.registry)
