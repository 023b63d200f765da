"""HTTP routes. Validation and error mapping live here; the engine does the work."""

from __future__ import annotations

import asyncio
import hmac
from typing import Annotated, Any

from fastapi import APIRouter, Header, Query, Request, Response
from fastapi.responses import JSONResponse

from adapters import GenerationParams, validate_name

from ..engine.engine import Engine, RowResult
from ..metrics import Metrics
from ..settings import ServerSettings
from .errors import ApiError
from .schemas import AdapterInfo, Details, ErrorBody, GenerateRequest, GenerateResponse

router = APIRouter()
ERRORS: dict[int | str, dict[str, Any]] = {
    code: {"model": ErrorBody} for code in (403, 404, 413, 422, 429, 500, 503)
}


def _engine(request: Request) -> Engine:
    return request.app.state.engine


def _settings(request: Request) -> ServerSettings:
    return request.app.state.settings


def _metrics(request: Request) -> Metrics:
    return request.app.state.metrics


def _params(body: GenerateRequest, settings: ServerSettings) -> GenerationParams:
    p = body.parameters
    max_new = p.max_new_tokens if p.max_new_tokens is not None else settings.default_max_new_tokens
    if max_new > settings.max_new_tokens:
        raise ApiError(
            422,
            "invalid_parameters",
            f"max_new_tokens={max_new} exceeds this server's cap of "
            f"{settings.max_new_tokens}: ask for fewer tokens",
        )
    if p.num_beams > settings.max_num_beams:
        raise ApiError(
            422,
            "invalid_parameters",
            f"num_beams={p.num_beams} exceeds this server's cap of {settings.max_num_beams}",
        )
    return GenerationParams(
        max_new_tokens=max_new,
        min_new_tokens=p.min_new_tokens,
        num_beams=p.num_beams,
        do_sample=p.do_sample,
        temperature=p.temperature,
        top_p=p.top_p,
        top_k=p.top_k,
        repetition_penalty=p.repetition_penalty,
        seed=p.seed,
    )


def _texts(body: GenerateRequest, settings: ServerSettings) -> list[str]:
    texts = [body.inputs] if isinstance(body.inputs, str) else list(body.inputs)
    if not texts:
        raise ApiError(422, "invalid_request", "inputs is an empty list: send at least one text")
    if len(texts) > settings.max_inputs_per_request:
        raise ApiError(
            413,
            "too_many_inputs",
            f"{len(texts)} inputs in one request exceed the cap of "
            f"{settings.max_inputs_per_request}: split the list",
        )
    for i, text in enumerate(texts):
        if not text.strip():
            raise ApiError(422, "invalid_request", f"input {i} is empty: send non-empty text")
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
    request: Request,
    body: GenerateRequest,
    adapter: Annotated[str | None, Query(description="Adapter name; omit for the plain base model")] = None,
):
    """Generate with one adapter (or the base model). List inputs give a list of results."""
    settings = _settings(request)
    if adapter is not None:
        validate_name(adapter)
    texts = _texts(body, settings)
    params = _params(body, settings)
    results = await _engine(request).generate(adapter, texts, params, truncate=body.parameters.truncate)
    responses = [_response(r, adapter) for r in results]
    return responses[0] if isinstance(body.inputs, str) else responses


@router.get("/adapters", response_model=list[AdapterInfo])
async def list_adapters(request: Request) -> list[dict]:
    """Every adapter file in the adapter folder, with where it is cached (device / host / disk)."""
    cache = _engine(request).cache
    if cache is None:
        raise ApiError(503, "not_ready", "the model is still loading", {"Retry-After": "5"})

    def collect() -> list[dict]:
        infos = []
        for name in cache.names_on_disk():
            try:
                infos.append(cache.describe(name))
            except Exception:  # noqa: S112 - a broken file must not hide the others; GET /adapters/{name} says why
                continue
        return infos

    return await asyncio.to_thread(collect)


@router.get("/adapters/{name}", response_model=AdapterInfo, responses=ERRORS)
async def get_adapter(request: Request, name: str) -> dict:
    cache = _engine(request).cache
    if cache is None:
        raise ApiError(503, "not_ready", "the model is still loading", {"Retry-After": "5"})
    return await asyncio.to_thread(cache.describe, validate_name(name))


def _require_admin(request: Request, authorization: str | None) -> None:
    key = request.app.state.admin_key
    if key is None:
        raise ApiError(
            403,
            "admin_disabled",
            "the admin API is off: start the server with "
            "INPUTTUNE_ADMIN_API_KEY (or --admin-api-key-file) to upload and delete adapters",
        )
    scheme, _, token = (authorization or "").partition(" ")
    if scheme.lower() != "bearer" or not hmac.compare_digest(token.strip().encode(), key.encode()):
        raise ApiError(403, "forbidden", "missing or wrong admin key: send 'Authorization: Bearer <key>'")


@router.put("/adapters/{name}", response_model=AdapterInfo, status_code=201, responses=ERRORS)
async def put_adapter(
    request: Request, name: str, authorization: Annotated[str | None, Header()] = None
) -> dict:
    """Upload a .safetensors adapter (the raw bytes as the body). Validated before it is stored;
    requests that arrive afterwards use it."""
    _require_admin(request, authorization)
    validate_name(name)
    settings = _settings(request)
    limit = settings.max_upload_mb * 1024 * 1024
    declared = request.headers.get("content-length")
    if declared is not None and int(declared) > limit:
        raise ApiError(
            413, "upload_too_large", f"upload of {declared} bytes exceeds {settings.max_upload_mb} MB"
        )
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise ApiError(413, "upload_too_large", f"upload exceeds {settings.max_upload_mb} MB")
        chunks.append(chunk)
    if size == 0:
        raise ApiError(422, "invalid_adapter_file", "the body is empty: send the .safetensors bytes")
    cache = _engine(request).cache
    if cache is None:
        raise ApiError(503, "not_ready", "the model is still loading", {"Retry-After": "5"})
    await asyncio.to_thread(cache.put, name, b"".join(chunks))
    return await asyncio.to_thread(cache.describe, name)


@router.delete("/adapters/{name}", status_code=204, responses=ERRORS)
async def delete_adapter(
    request: Request, name: str, authorization: Annotated[str | None, Header()] = None
) -> Response:
    _require_admin(request, authorization)
    cache = _engine(request).cache
    if cache is None:
        raise ApiError(503, "not_ready", "the model is still loading", {"Retry-After": "5"})
    await asyncio.to_thread(cache.delete, validate_name(name))
    return Response(status_code=204)


@router.get("/health")
async def health() -> dict:
    """The process is alive (the model may still be loading)."""
    return {"status": "ok"}


@router.get("/ready", responses={503: {"model": ErrorBody}})
async def ready(request: Request):
    """200 once the model is loaded and warmed up; 503 while loading, after a failed start or draining."""
    engine = _engine(request)
    if engine.ready.is_set():
        model = engine.model
        assert model is not None
        return {
            "status": "ready",
            "model": engine.model_path,
            "device": str(model.base.device),
            "dtype": str(model.base.dtype).replace("torch.", ""),
        }
    if engine.load_error is not None:
        message = f"start-up failed: {engine.load_error}"
    else:
        message = "shutting down" if engine.stopping else "the model is loading"
    return JSONResponse(
        {"error": message, "error_type": "not_ready"}, status_code=503, headers={"Retry-After": "5"}
    )


@router.get("/metrics")
async def metrics(request: Request) -> Response:
    engine = _engine(request)
    m = _metrics(request)
    m.queue_depth.set(len(engine.queue))
    return Response(m.render(), media_type="text/plain; version=0.0.4; charset=utf-8")
