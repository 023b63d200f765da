"""`inputtune cluster serve`: the HTTP API on Ray Serve, N replicas routed by adapter (docs/cluster.md).

On a machine with no Ray cluster (and no RAY_ADDRESS) it starts a local one; Ctrl-C or SIGTERM
deletes the application (replicas drain) and stops what the command started. Server options are
``inputtune serve``'s (each replica's settings); ``--host``/``--port`` are Ray Serve's HTTP proxy.
"""

from __future__ import annotations

import argparse
import logging
import os
import signal
import threading

from .options import add_settings_options

log = logging.getLogger(__name__)

CLUSTER_FIELDS = (
    "replicas",
    "max_replicas",
    "target_ongoing_requests",
    "max_ongoing_requests",
    "max_queued_requests",
    "num_cpus",
    "num_gpus",
    "affinity",
)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="cluster_command", required=True)
    serve = sub.add_parser(
        "serve",
        help="serve on Ray Serve: replicas with adapter affinity, batching across adapters in each",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    group = serve.add_argument_group("cluster")
    group.add_argument("--replicas", type=int, default=2, help="replicas (one engine, one device each)")
    group.add_argument("--max-replicas", type=int, help="autoscale between --replicas and this many")
    group.add_argument(
        "--target-ongoing-requests", type=float, help="autoscaling target per replica (max_batch_size / 2)"
    )
    group.add_argument("--max-ongoing-requests", type=int, help="per replica (2 x max_batch_size)")
    group.add_argument("--max-queued-requests", type=int, help="waiting for a replica before 503")
    group.add_argument("--num-cpus", type=float, default=1, help="CPUs reserved per replica")
    group.add_argument(
        "--num-gpus", type=float, help="GPUs per replica (default: 1 with --device cuda or a GPU under auto)"
    )
    group.add_argument(
        "--affinity", action=argparse.BooleanOptionalAction, default=True, help="route by adapter"
    )
    group.add_argument(
        "--ray-address", help="an existing Ray cluster (default: RAY_ADDRESS, else a local one)"
    )
    add_settings_options(serve)  # each replica's settings; --host/--port: Ray Serve's HTTP proxy


def _num_gpus(args: argparse.Namespace, device: str) -> float:
    if args.num_gpus is not None:
        return args.num_gpus
    if device.startswith("cuda"):
        return 1
    if device == "auto":
        import torch

        return 1 if torch.cuda.is_available() else 0
    return 0


def run(args: argparse.Namespace) -> int:
    import ray
    from pydantic import ValidationError
    from ray import serve

    from ..app import resolve_paths
    from ..cluster.app import APP_NAME, ClusterOptions, build_app
    from ..errors import SettingsError
    from ..settings import ServerSettings, load_settings

    given = {name: getattr(args, name) for name in ServerSettings.model_fields if hasattr(args, name)}
    settings = load_settings(**given)  # refuse bad options before starting anything
    resolve_paths(settings)
    replica_settings = {k: v for k, v in given.items() if k not in ("host", "port")}
    cluster = {name: getattr(args, name) for name in CLUSTER_FIELDS}
    cluster["num_gpus"] = _num_gpus(args, settings.device)
    try:
        options = ClusterOptions(
            settings=replica_settings, **{k: v for k, v in cluster.items() if v is not None}
        )
    except ValidationError as e:
        problems = "; ".join(
            (f"--{'-'.join(map(str, err['loc']))}: " if err["loc"] else "")
            + err["msg"].removeprefix("Value error, ")
            for err in e.errors()
        )
        raise SettingsError(f"invalid cluster options: {problems}".replace("_", "-")) from e

    address = args.ray_address or os.environ.get("RAY_ADDRESS")
    if address:
        ray.init(address=address)
        started_ray = False
    else:
        cpus = max(os.cpu_count() or 1, int(options.replicas * options.num_cpus) or 1)
        ray.init(address="local", num_cpus=cpus, include_dashboard=False)
        started_ray = True
        log.info("started a local Ray at %s (%d CPUs)", ray.get_runtime_context().gcs_address, cpus)
    stop = threading.Event()
    previous = {sig: signal.signal(sig, lambda *_: stop.set()) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        serve.start(http_options={"host": settings.host, "port": settings.port})
        serve.run(build_app(options), name=APP_NAME, route_prefix="/")
        log.info(
            "inputtune on Ray Serve at http://%s:%d with %d replica(s)%s; Ctrl-C stops it",
            settings.host,
            settings.port,
            options.replicas,
            f" (autoscaling to {options.max_replicas})" if options.max_replicas else "",
        )
        stop.wait()
        log.info("stopping: the replicas drain (up to %.0f s)", settings.drain_timeout_s)
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        try:
            serve.delete(APP_NAME)
            if started_ray:
                serve.shutdown()
        finally:
            if started_ray:
                ray.shutdown()
    return 0
