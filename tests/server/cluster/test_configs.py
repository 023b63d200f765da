"""The checked-in Ray Serve config and KubeRay manifest (docker/) parse with Ray Serve's own schema and
build the application; the ingress reads the adapter where the single-process routes do."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from ray.serve.schema import ServeDeploySchema

from server.cluster.app import ClusterOptions, app_builder
from server.cluster.routing import adapter_of_request

DOCKER = Path(__file__).resolve().parents[3] / "docker"


def check_serve_config(config: dict) -> None:
    schema = ServeDeploySchema.model_validate(config)
    (app,) = schema.applications
    assert app.import_path == "server.cluster.app:app_builder" and app.route_prefix == "/"
    options = ClusterOptions(**app.args)
    assert options.num_gpus == 1 and options.max_replicas > options.replicas
    built = app_builder(app.args)  # builds the deployments (no Ray needed)
    assert built is not None


def test_the_serve_config_file_is_valid():
    check_serve_config(yaml.safe_load((DOCKER / "ray-serve.yaml").read_text()))


def test_the_kuberay_manifest_carries_a_valid_serve_config():
    manifest = yaml.safe_load((DOCKER / "kuberay-rayservice.yaml").read_text())
    assert manifest["apiVersion"] == "ray.io/v1" and manifest["kind"] == "RayService"
    check_serve_config(yaml.safe_load(manifest["spec"]["serveConfigV2"]))
    workers = manifest["spec"]["rayClusterConfig"]["workerGroupSpecs"][0]["template"]["spec"]
    assert workers["containers"][0]["resources"]["limits"]["nvidia.com/gpu"] == "1"


@pytest.mark.parametrize(
    ("method", "path", "query", "body", "adapter"),
    [
        ("POST", "/generate", b"adapter=fr-en", b'{"inputs": "x"}', "fr-en"),
        ("POST", "/generate_stream", b"", b'{"inputs": "x", "parameters": {"adapter_id": "e2e"}}', "e2e"),
        ("POST", "/", b"", b'{"inputs": "x", "parameters": {"adapter_id": "dart"}}', "dart"),
        ("POST", "/v1/completions", b"", b'{"model": "de-en", "prompt": "x"}', "de-en"),
        ("POST", "/v1/chat/completions", b"", b'{"model": "e2e", "messages": []}', "e2e"),
        ("POST", "/v1/completions", b"adapter=ignored", b'{"model": "", "prompt": "x"}', None),
        ("POST", "/generate", b"", b"{not json", None),
        ("POST", "/generate", b"", b'["a list"]', None),
        ("POST", "/generate", b"", b'{"inputs": "x", "parameters": {"adapter_id": 3}}', None),
        ("GET", "/adapters", b"adapter=x", b"", None),
        ("PUT", "/adapters/x", b"", b"bytes", None),
    ],
)
def test_the_ingress_reads_the_adapter_where_the_routes_do(method, path, query, body, adapter):
    assert adapter_of_request(method, path, query, body) == adapter
