"""The routes around generation: adapters (list, describe, upload, delete), health, readiness,
metrics. The generation routes are in ``generate.py`` (native/TGI) and ``openai.py``."""

from __future__ import annotations

import asyncio
import hmac
from typing import Annotated

from fastapi import APIRouter, Header, Request, Response
from fastapi.responses import JSONResponse

from adapters import NotSafetensorsError, validate_name

from ..errors import AdminDisabledError, ForbiddenError, UploadTooLargeError
from .common import ERRORS
from .deps import AdminKeyDep, EngineDep, MetricsDep, SettingsDep
from .schemas import AdapterInfo, ErrorBody

router = APIRouter()


@router.get("/adapters", response_model=list[AdapterInfo])
async def list_adapters(engine: EngineDep) -> list[dict]:
    """Every adapter file in the adapter folder, with where it is cached (device / host / disk)."""
    return await asyncio.to_thread(engine.adapter_infos)


@router.get("/adapters/{name}", response_model=AdapterInfo, responses=ERRORS)
async def get_adapter(name: str, engine: EngineDep) -> dict:
    return await asyncio.to_thread(engine.adapter_info, validate_name(name))


def _require_admin(key: str | None, authorization: str | None) -> None:
    if key is None:
        raise AdminDisabledError(
            "the admin API is off: start the server with "
            "INPUTTUNE_ADMIN_API_KEY (or --admin-api-key-file) to upload and delete adapters"
        )
    scheme, _, token = (authorization or "").partition(" ")
    if scheme.lower() != "bearer" or not hmac.compare_digest(token.strip().encode(), key.encode()):
        raise ForbiddenError("missing or wrong admin key: send 'Authorization: Bearer <key>'")


@router.put("/adapters/{name}", response_model=AdapterInfo, status_code=201, responses=ERRORS)
async def put_adapter(
    request: Request,
    name: str,
    engine: EngineDep,
    settings: SettingsDep,
    admin_key: AdminKeyDep,
    authorization: Annotated[str | None, Header()] = None,
) -> dict:
    """Upload a .safetensors adapter (the raw bytes as the body). Validated before it is stored;
    requests that arrive afterwards use it."""
    _require_admin(admin_key, authorization)
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
    name: str,
    engine: EngineDep,
    admin_key: AdminKeyDep,
    authorization: Annotated[str | None, Header()] = None,
) -> Response:
    _require_admin(admin_key, authorization)
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


@router.get("/metrics")
async def metrics(engine: EngineDep, m: MetricsDep) -> Response:
    engine.update_metrics()
    return Response(m.render(), media_type="text/plain; version=0.0.4; charset=utf-8")
