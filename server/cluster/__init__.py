"""inputtune on Ray Serve: N replicas, each one engine with its own cross-adapter batching, behind an
ingress that routes a request to a replica that already holds its adapter (``docs/cluster.md``).

``routing``: which adapter a request names (the multiplexed model id); ``bridge``: one HTTP request run
through the single-process FastAPI app in a replica; ``replica`` and ``ingress``: the two deployments;
``app``: the application builder (``inputtune cluster serve``, ``serve run``, ``docker/ray-serve.yaml``).
"""
