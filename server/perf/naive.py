"""The naive baseline: what a user without inputtune would serve.

One request at a time; the adapter (cached by name after its first load) is applied to
that request's embeddings with the plain InputAdapter module, then plain ``transformers``
``generate`` for that one row. Same HTTP API subset as the real server, so the same load
test runs against both, and the same source layout and per-row decoding rules
(``adapters.text``, ``adapters.decoding``), so its answers are the server's. Benchmarks only:
no batching, no queue bound, no admin API.
"""

from __future__ import annotations

import asyncio
import threading
import time
from contextlib import asynccontextmanager
from pathlib import Path

import torch
from fastapi import FastAPI, Query, Request
from fastapi.responses import JSONResponse

from adapters import (
    AdapterError,
    BaseModel,
    GenerationOutput,
    GenerationParams,
    InputAdapter,
    adapter_path,
    encode_sources,
    list_adapter_names,
    load_adapter,
    load_base,
)
from adapters.decoding.static import generate_rows

from ..api.schemas import GenerateRequest

DEFAULT_MAX_NEW_TOKENS = 64


def generate_one(
    base: BaseModel, module: InputAdapter | None, text: str, params: GenerationParams
) -> GenerationOutput:
    """One row: plain embeddings through ``module`` (or none), then one ``generate`` call under the
    shared per-row policy."""
    model, tok = base.model, base.tokenizer
    ids = torch.tensor(encode_sources(tok, [text], model.config.is_encoder_decoder), device=base.device)
    embeds = model.get_input_embeddings()(ids)  # (1, T, D)
    mask = torch.ones_like(ids)
    if module is not None:
        embeds, mask = module(embeds, torch.tensor([ids.shape[1]], device=base.device))
    return generate_rows(model, tok, [params], [ids.shape[1]], mask, inputs_embeds=embeds)[0]


def create_naive_app(
    model_path: str, adapter_dir: Path, device: str = "auto", dtype: str = "auto"
) -> FastAPI:
    state: dict = {"base": None, "adapters": {}}
    lock = threading.Lock()

    def load() -> None:
        state["base"] = load_base(model_path, device=device, dtype=dtype)

    def adapter_module(base: BaseModel, name: str) -> InputAdapter:
        module = state["adapters"].get(name)
        if module is None:
            weights = load_adapter(adapter_path(adapter_dir, name), base.fingerprint, base.d_model)
            module = state["adapters"][name] = InputAdapter(weights).to(device=base.device, dtype=base.dtype)
        return module

    def run_one(adapter: str | None, text: str, params: GenerationParams) -> dict:
        base = state["base"]
        with lock, torch.inference_mode():
            start = time.perf_counter()
            module = adapter_module(base, adapter) if adapter is not None else None
            out = generate_one(base, module, text, params)
            elapsed = time.perf_counter() - start
        return {
            "generated_text": out.text,
            "adapter": adapter,
            "details": {
                "input_tokens": out.input_tokens,
                "generated_tokens": out.generated_tokens,
                "inference_ms": round(elapsed * 1000, 3),
                "batch_rows": 1,
                "batch_adapters": 1,
            },
        }

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        await asyncio.to_thread(load)
        yield

    app = FastAPI(title="inputtune naive baseline", lifespan=lifespan)

    @app.post("/generate")
    async def generate(request: Request, body: GenerateRequest, adapter: str | None = Query(None)):
        texts = [body.inputs] if isinstance(body.inputs, str) else body.inputs
        params = body.parameters.generation_params(DEFAULT_MAX_NEW_TOKENS)
        try:
            results = [await asyncio.to_thread(run_one, adapter, t, params) for t in texts]
        except AdapterError as e:
            return JSONResponse({"error": str(e), "error_type": type(e).__name__}, status_code=404)
        headers = {"x-request-id": request.headers.get("x-request-id", "")}
        return JSONResponse(results[0] if isinstance(body.inputs, str) else results, headers=headers)

    @app.get("/ready")
    async def ready():
        return {"status": "ready"} if state["base"] is not None else JSONResponse({}, status_code=503)

    @app.get("/adapters")
    async def adapters():
        return [{"name": name} for name in list_adapter_names(adapter_dir)]

    return app
