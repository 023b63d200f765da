"""Request and response bodies of the HTTP API (field names as text-generation servers use them)."""

from __future__ import annotations

import dataclasses
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from adapters import GenerationParams


class Parameters(BaseModel):
    """Decoding settings; caps (max_new_tokens, num_beams, input length) come from the server settings."""

    model_config = ConfigDict(extra="forbid")

    max_new_tokens: int | None = Field(
        None, ge=1, description="Tokens to generate at most (server default if unset)"
    )
    min_new_tokens: int = Field(0, ge=0, description="Tokens to generate at least")
    num_beams: int = Field(1, ge=1, description="Beam search width (1 = greedy or sampling)")
    do_sample: bool = Field(False, description="Sample instead of greedy decoding")
    temperature: float = Field(1.0, gt=0, description="Sampling temperature (> 0)")
    top_p: float = Field(1.0, gt=0, le=1, description="Nucleus sampling mass")
    top_k: int = Field(0, ge=0, description="Sample among the k most likely tokens (0 = off)")
    repetition_penalty: float = Field(1.0, gt=0, description="> 1 discourages repeating tokens")
    seed: int | None = Field(None, ge=0, lt=2**63, description="Seed of this row's sampling stream")
    truncate: bool = Field(
        False,
        description="Cut inputs longer than the server's max_input_tokens instead of refusing them with 413",
    )

    def generation_params(self, default_max_new_tokens: int) -> GenerationParams:
        """These settings as the decoder takes them (InvalidParametersError if they contradict)."""
        values = {f.name: getattr(self, f.name) for f in dataclasses.fields(GenerationParams)}
        if values["max_new_tokens"] is None:
            values["max_new_tokens"] = default_max_new_tokens
        return GenerationParams(**values)


class GenerateRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    inputs: str | list[str] = Field(..., description="One text, or a list of texts (one output each)")
    parameters: Parameters = Field(default_factory=Parameters)


class Details(BaseModel):
    input_tokens: int
    generated_tokens: int
    finish_reason: Literal["eos", "length"]
    queue_ms: float = Field(description="Time waiting for a batch")
    inference_ms: float = Field(description="Time of the batch this row ran in")
    batch_rows: int = Field(description="Rows in that batch")
    batch_adapters: int = Field(description="Distinct adapters in that batch (the base model counts as one)")
    seed: int | None = Field(None, description="Seed used, for sampled rows")


class GenerateResponse(BaseModel):
    generated_text: str
    adapter: str | None
    details: Details


class AdapterInfo(BaseModel):
    name: str
    kind: str
    base_model: str
    base_fingerprint: str
    compatible: bool
    d_model: int
    prompt_length: int
    hidden_size: int | None
    size_bytes: int
    cached: Literal["device", "host", "disk"]
    pinned: bool
    metadata: dict[str, str]


class ErrorBody(BaseModel):
    error: str
    error_type: str
