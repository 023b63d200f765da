"""The naive baseline: what a user without inputtune would serve.

One request at a time; the adapter (cached by name after its first load) is applied to
that request's embeddings with the plain InputAdapter module, then plain
``transformers`` ``generate``. Same HTTP API subset as the real server, so the same load
test runs against both. Benchmarks only: no batching, no queue bound, no admin API.
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
from transformers import GenerationConfig

from adapters import AdapterError, InputAdapter, adapter_path, load_adapter, load_base

from .api.schemas import GenerateRequest


def create_naive_app(
    model_path: str, adapter_dir: Path, device: str = "auto", dtype: str = "auto"
) -> FastAPI:
    state: dict = {"base": None, "adapters": {}}
    lock = threading.Lock()

    def load() -> None:
        state["base"] = load_base(model_path, device=device, dtype=dtype)

    def run_one(adapter: str | None, text: str, params) -> dict:
        base = state["base"]
        model, tok = base.model, base.tokenizer
        with lock, torch.inference_mode():
            start = time.perf_counter()
            ids = tok([text], return_tensors="pt")["input_ids"].to(base.device)
            embeds = model.get_input_embeddings()(ids)
            mask = torch.ones_like(ids)
            if adapter is not None:
                module = state["adapters"].get(adapter)
                if module is None:
                    weights = load_adapter(adapter_path(adapter_dir, adapter), base.fingerprint, base.d_model)
                    module = InputAdapter(weights).to(device=base.device, dtype=base.dtype)
                    state["adapters"][adapter] = module
                embeds, mask = module(embeds, torch.tensor([ids.shape[1]], device=base.device))
            config = GenerationConfig(
                max_new_tokens=params.max_new_tokens or 64,
                min_new_tokens=params.min_new_tokens,
                num_beams=params.num_beams,
                do_sample=params.do_sample,
                temperature=params.temperature,
                top_p=params.top_p,
                top_k=params.top_k or None,
                pad_token_id=tok.pad_token_id,
                eos_token_id=tok.eos_token_id,
                decoder_start_token_id=getattr(model.config, "decoder_start_token_id", None),
            )
            out = model.generate(inputs_embeds=embeds, attention_mask=mask, generation_config=config)
            sequence = out[0].tolist()[
                1 if model.config.is_encoder_decoder else 0 :
            ]  # drop the decoder start
            tokens = (
                sequence[: sequence.index(tok.eos_token_id)] if tok.eos_token_id in sequence else sequence
            )
            elapsed = time.perf_counter() - start
        return {
            "generated_text": tok.decode(tokens, skip_special_tokens=True),
            "adapter": adapter,
            "details": {
                "input_tokens": int(ids.shape[1]),
                "generated_tokens": len(tokens),
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
        try:
            results = [await asyncio.to_thread(run_one, adapter, t, body.parameters) for t in texts]
        except AdapterError as e:
            return JSONResponse({"error": str(e), "error_type": type(e).__name__}, status_code=404)
        headers = {"x-request-id": request.headers.get("x-request-id", "")}
        return JSONResponse(results[0] if isinstance(body.inputs, str) else results, headers=headers)

    @app.get("/ready")
    async def ready():
        return {"status": "ready"} if state["base"] is not None else JSONResponse({}, status_code=503)

    @app.get("/adapters")
    async def adapters():
        return [{"name": p.stem} for p in sorted(Path(adapter_dir).glob("*.safetensors"))]

    return app
