"""The routes around generation: adapters (list, describe, upload, delete), health, readiness,
metrics. The generation routes are in ``generate.py`` (native/TGI) and ``openai.py``."""

from __future__ import annotations

import asyncio
from typing import Annotated

from fastapi import APIRouter, Header, Path, Request, Response
from fastapi.responses import JSONResponse, PlainTextResponse

from adapters import NotSafetensorsError, validate_name

from ..errors import AdminDisabledError, ForbiddenError, UploadTooLargeError
from .common import ADAPTER_NAME_SCHEMA, ERRORS
from .deps import AdminKeyDep, CallerDep, EngineDep, MetricsDep, SettingsDep, bearer_token, matches
from .schemas import AdapterInfo, ErrorBody

AdapterName = Annotated[str, Path(description="An adapter's name", json_schema_extra=ADAPTER_NAME_SCHEMA)]
router = APIRouter()


@router.get("/adapters", response_model=list[AdapterInfo])
async def list_adapters(engine: EngineDep, who: CallerDep) -> list[dict]:
    """Every adapter file in the adapter folder (that the API key may use), with where it is cached
    (device / host / disk)."""
    return [a for a in await asyncio.to_thread(engine.adapter_infos) if who.may_use(a["name"])]


@router.get("/adapters/{name}", response_model=AdapterInfo, responses=ERRORS)
async def get_adapter(name: AdapterName, engine: EngineDep, who: CallerDep) -> dict:
    who.check(validate_name(name))
    return await asyncio.to_thread(engine.adapter_info, name)


def _require_admin(request: Request, key: str | None) -> None:
    if key is None:
        raise AdminDisabledError(
            "the admin API is off: start the server with "
            "INPUTTUNE_ADMIN_API_KEY (or --admin-api-key-file) to upload and delete adapters"
        )
    if not matches(bearer_token(request), key):
        raise ForbiddenError("missing or wrong admin key: send 'Authorization: Bearer <key>'")


UPLOAD_BODY = {
    "requestBody": {
        "required": True,
        "content": {"application/octet-stream": {"schema": {"type": "string", "format": "binary"}}},
        "description": "The adapter's .safetensors file, as it is",
    }
}


@router.put(
    "/adapters/{name}",
    response_model=AdapterInfo,
    status_code=201,
    responses=ERRORS,
    openapi_extra=UPLOAD_BODY,
)
async def put_adapter(
    request: Request,
    name: AdapterName,
    engine: EngineDep,
    settings: SettingsDep,
    admin_key: AdminKeyDep,
    authorization: Annotated[str | None, Header(description="Bearer <admin key>")] = None,
) -> dict:
    """Upload a .safetensors adapter (the raw bytes as the body). Validated before it is stored;
    requests that arrive afterwards use it."""
    _require_admin(request, admin_key)
    validate_name(name)
    limit = settings.max_upload_mb * 1024 * 1024
    declared = request.headers.get("content-length")
    if declared is not None and int(declared) > limit:
        raise UploadTooLargeError(f"upload of {declared} bytes exceeds {settings.max_upload_mb} MB")
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise UploadTooLargeError(f"upload exceeds {settings.max_upload_mb} MB")
        chunks.append(chunk)
    if size == 0:
        raise NotSafetensorsError("the body is empty: send the .safetensors bytes")
    return await asyncio.to_thread(engine.upload_adapter, name, b"".join(chunks))


@router.delete("/adapters/{name}", status_code=204, responses=ERRORS)
async def delete_adapter(
    request: Request,
    name: AdapterName,
    engine: EngineDep,
    admin_key: AdminKeyDep,
    authorization: Annotated[str | None, Header(description="Bearer <admin key>")] = None,
) -> Response:
    _require_admin(request, admin_key)
    await asyncio.to_thread(engine.delete_adapter, validate_name(name))
    return Response(status_code=204)


@router.get("/health")
async def health() -> dict:
    """The process is alive (the model may still be loading)."""
    return {"status": "ok"}


@router.get("/ready", responses={503: {"model": ErrorBody}})
async def ready(engine: EngineDep):
    """200 once the model is loaded and warmed up; 503 while loading, after a failed start or draining."""
    status = engine.status()
    if status.ready:
        return {"status": "ready", "model": status.model, "device": status.device, "dtype": status.dtype}
    return JSONResponse(
        {"error": status.reason, "error_type": "not_ready"}, status_code=503, headers={"Retry-After": "5"}
    )


@router.get("/metrics", response_class=PlainTextResponse, responses={200: {"content": {"text/plain": {}}}})
async def metrics(engine: EngineDep, m: MetricsDep) -> Response:
    """Prometheus metrics (text exposition format)."""
    engine.update_metrics()
    return Response(m.render(), media_type="text/plain; version=0.0.4; charset=utf-8")
