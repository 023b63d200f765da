"""HTTP routes. Validation and error mapping live here; the engine does the work."""

from __future__ import annotations

import asyncio
import hmac
from typing import Annotated, Any

from fastapi import APIRouter, Header, Query, Request, Response
from fastapi.responses import JSONResponse

from adapters import GenerationParams, InvalidParametersError, NotSafetensorsError, validate_name

from ..engine.types import RowResult
from ..errors import (
    AdminDisabledError,
    ForbiddenError,
    InvalidRequestError,
    TooManyInputsError,
    UploadTooLargeError,
)
from ..settings import ServerSettings
from .deps import AdminKeyDep, EngineDep, MetricsDep, SettingsDep
from .schemas import AdapterInfo, Details, ErrorBody, GenerateRequest, GenerateResponse

router = APIRouter()
ERRORS: dict[int | str, dict[str, Any]] = {
    code: {"model": ErrorBody} for code in (403, 404, 413, 422, 429, 500, 503)
}


def _params(body: GenerateRequest, settings: ServerSettings) -> GenerationParams:
    """The request's decoding settings within this server's caps."""
    params = body.parameters.generation_params(settings.default_max_new_tokens)
    if params.max_new_tokens > settings.max_new_tokens:
        raise InvalidParametersError(
            f"max_new_tokens={params.max_new_tokens} exceeds this server's cap of {settings.max_new_tokens}: "
            "ask for fewer tokens"
        )
    if params.num_beams > settings.max_num_beams:
        raise InvalidParametersError(
            f"num_beams={params.num_beams} exceeds this server's cap of {settings.max_num_beams}"
        )
    return params


def _texts(body: GenerateRequest, settings: ServerSettings) -> list[str]:
    texts = [body.inputs] if isinstance(body.inputs, str) else list(body.inputs)
    if not texts:
        raise InvalidRequestError("inputs is an empty list: send at least one text")
    if len(texts) > settings.max_inputs_per_request:
        raise TooManyInputsError(
            f"{len(texts)} inputs in one request exceed the cap of "
            f"{settings.max_inputs_per_request}: split the list"
        )
    for i, text in enumerate(texts):
        if not text.strip():
            raise InvalidRequestError(f"input {i} is empty: send non-empty text")
    return texts


def _response(result: RowResult, adapter: str | None) -> GenerateResponse:
    out = result.output
    return GenerateResponse(
        generated_text=out.text,
        adapter=adapter,
        details=Details(
            input_tokens=out.input_tokens,
            generated_tokens=out.generated_tokens,
            finish_reason=out.finish_reason,  # type: ignore[arg-type]
            queue_ms=round(result.queue_s * 1000, 3),
            inference_ms=round(result.inference_s * 1000, 3),
            batch_rows=result.batch_rows,
            batch_adapters=result.batch_adapters,
            seed=out.seed,
        ),
    )


@router.post("/generate", response_model=GenerateResponse | list[GenerateResponse], responses=ERRORS)
async def generate(
    body: GenerateRequest,
    engine: EngineDep,
    settings: SettingsDep,
    adapter: Annotated[str | None, Query(description="Adapter name; omit for the plain base model")] = None,
):
    """Generate with one adapter (or the base model). List inputs give a list of results."""
    if adapter is not None:
        validate_name(adapter)
    texts = _texts(body, settings)
    params = _params(body, settings)
    results = await engine.generate(adapter, texts, params, truncate=body.parameters.truncate)
    responses = [_response(r, adapter) for r in results]
    return responses[0] if isinstance(body.inputs, str) else responses


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
    m.queue_depth.set(engine.queue_depth())
    return Response(m.render(), media_type="text/plain; version=0.0.4; charset=utf-8")
