"""The OpenAPI schema, with this server's caps in it: a client (or a fuzzer) reading the schema knows
the largest max_new_tokens, num_beams and list of inputs this server takes, not only their types."""

from __future__ import annotations

from collections.abc import Callable

from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi

from ..settings import ServerSettings


def _cap(prop: dict, key: str, value: int) -> None:
    """Set ``key`` (maximum, maxItems) on the branch of a property's schema it applies to."""
    kind = {"maximum": "integer", "maxItems": "array"}[key]
    branches = prop.get("anyOf", [prop])
    for branch in branches:
        if branch.get("type") == kind:
            branch[key] = value


def caps(settings: ServerSettings) -> dict[tuple[str, str, str], int]:
    """(schema, property, keyword) -> this server's limit."""
    tokens, inputs = settings.max_new_tokens, settings.max_inputs_per_request
    found = {
        ("Parameters", "max_new_tokens", "maximum"): tokens,
        ("Parameters", "min_new_tokens", "maximum"): tokens,
        ("Parameters", "num_beams", "maximum"): settings.max_num_beams,
        ("GenerateRequest", "inputs", "maxItems"): inputs,
        ("CompatRequest", "inputs", "maxItems"): inputs,
        ("CompletionRequest", "prompt", "maxItems"): inputs,
    }
    for model in ("CompletionRequest", "ChatCompletionRequest"):
        for field in ("max_tokens", "min_tokens", "max_completion_tokens"):
            found[(model, field, "maximum")] = tokens
    return found


def openapi_with_caps(
    app: FastAPI, settings: ServerSettings, model_id: Callable[[], str]
) -> Callable[[], dict]:
    """``app.openapi`` with the caps above and the base model's id among the OpenAI routes' models."""

    def openapi() -> dict:
        if app.openapi_schema is None:
            schema = get_openapi(
                title=app.title, version=app.version, description=app.description, routes=app.routes
            )
            models = schema["components"]["schemas"]
            for (model, field, key), value in caps(settings).items():
                if field in models.get(model, {}).get("properties", {}):
                    _cap(models[model]["properties"][field], key, value)
            for model in ("CompletionRequest", "ChatCompletionRequest"):
                models[model]["properties"]["model"]["anyOf"].append({"const": model_id()})
            app.openapi_schema = schema
        return app.openapi_schema

    return openapi
