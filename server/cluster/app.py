"""The Ray Serve application: an ingress in front of N inputtune replicas.

``build_app(ClusterOptions(...))`` for Python (``inputtune cluster serve``, the tests), ``app_builder``
for ``serve run`` / ``serve deploy`` with a config file (``docker/ray-serve.yaml``: its ``args`` are
``ClusterOptions`` fields). Defaults, and why (``docs/cluster.md``):

- ``max_ongoing_requests`` per replica: 2 x max_batch_size (64). A replica runs up to a batch of rows
  and keeps as many waiting, so a batch can refill at every decoder step; the engine itself answers
  429 when its expected wait is too long. Ray Serve's default (5) would starve the batching.
- ``target_ongoing_requests`` (autoscaling): max_batch_size / 2 (16) per replica: scale up before a
  replica's batch is full, since every row beyond it waits for a free slot.
- ``max_queued_requests``: 4 x max_ongoing_requests waiting for a replica (in the ingress): beyond it,
  503 with Retry-After.
- ``graceful_shutdown_timeout_s``: the engine's drain timeout, plus 15 s for the running batch.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, Field, model_validator
from ray import serve
from ray.serve.config import AutoscalingConfig

from ..settings import ServerSettings, load_settings
from .ingress import InputtuneIngress
from .replica import InputtuneReplica

APP_NAME = "inputtune"


class ClusterOptions(BaseModel):
    """How to deploy: the replicas' server settings (``settings``: ServerSettings fields, besides the
    INPUTTUNE_* variables of their environment) and the Ray Serve knobs."""

    model_config = {"extra": "forbid"}

    settings: dict[str, Any] = Field(
        default_factory=dict, description="ServerSettings fields for each replica"
    )
    replicas: int = Field(1, ge=1, description="Replicas (the minimum when max_replicas is larger)")
    max_replicas: int | None = Field(None, ge=1, description="Autoscale up to this many replicas")
    target_ongoing_requests: float | None = Field(
        None, gt=0, description="Autoscaling target per replica (default max_batch_size / 2)"
    )
    max_ongoing_requests: int | None = Field(
        None, ge=1, description="Requests one replica takes at once (default 2 x max_batch_size)"
    )
    max_queued_requests: int | None = Field(
        None,
        ge=-1,
        description="Requests waiting for a replica before 503 (default 4 x max_ongoing_requests)",
    )
    num_cpus: float = Field(1, ge=0, description="CPUs reserved per replica")
    num_gpus: float = Field(
        0, ge=0, description="GPUs per replica (1 on a GPU cluster: one engine per device)"
    )
    affinity: bool = Field(True, description="Route by adapter (multiplexed id); off: Ray Serve's default")
    retries: int = Field(2, ge=0, le=10, description="Resends of a request whose replica failed first")

    @model_validator(mode="after")
    def _check(self) -> ClusterOptions:
        if self.max_replicas is not None and self.max_replicas < self.replicas:
            raise ValueError(f"max_replicas ({self.max_replicas}) is below replicas ({self.replicas})")
        load_settings(**self.settings)  # refuse bad settings here (SettingsError), not in every replica
        return self


def build_app(options: ClusterOptions):
    """The application (``serve.run(build_app(...))``)."""
    settings = ServerSettings(**options.settings)
    ongoing = options.max_ongoing_requests or 2 * settings.max_batch_size
    queued = options.max_queued_requests if options.max_queued_requests is not None else 4 * ongoing
    scaling: dict[str, Any] = {"num_replicas": options.replicas}
    if options.max_replicas is not None and options.max_replicas > options.replicas:
        scaling = {
            "autoscaling_config": AutoscalingConfig(
                min_replicas=options.replicas,
                max_replicas=options.max_replicas,
                target_ongoing_requests=options.target_ongoing_requests
                or max(1, settings.max_batch_size // 2),
            )
        }
    actor_options: dict[str, Any] = {"num_cpus": options.num_cpus}
    if options.num_gpus:
        actor_options["num_gpus"] = options.num_gpus
    replica = serve.deployment(
        name="InputtuneReplica",
        ray_actor_options=actor_options,
        max_ongoing_requests=ongoing,
        max_queued_requests=queued,
        graceful_shutdown_timeout_s=settings.drain_timeout_s + 15,
        graceful_shutdown_wait_loop_s=1,
        health_check_period_s=5,
        **scaling,
    )(InputtuneReplica).bind(options.settings)
    ingress = serve.deployment(
        name="InputtuneIngress",
        ray_actor_options={"num_cpus": 0},
        max_ongoing_requests=max(1000, queued + ongoing * (options.max_replicas or options.replicas)),
    )(InputtuneIngress)
    return ingress.bind(
        replica,
        affinity=options.affinity,
        retries=options.retries,
        first_byte_timeout_s=settings.request_timeout_s + 30,
    )


def app_builder(args: dict[str, Any]):
    """``serve run server.cluster.app:app_builder``: ``args`` are ClusterOptions fields."""
    return build_app(ClusterOptions(**args))
