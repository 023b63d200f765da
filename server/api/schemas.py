"""Request and response bodies of the native API, which is TGI's: ``POST /generate``,
``POST /generate_stream`` and ``POST /`` take the same body, so TGI, LoRAX and Hugging Face clients
(``InferenceClient.text_generation``, ``lorax-client``, ``text-generation``) work unchanged.

Fields those clients send that inputtune does not implement are accepted at their neutral value
(null, false) and refused with a message otherwise, never silently ignored.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from adapters import GenerationParams, InvalidParametersError
from adapters.decoding.params import MAX_LOGPROBS, MAX_STOP_SEQUENCES

FinishReason = Literal["length", "eos_token", "stop_sequence"]
FINISH_REASONS: dict[str, FinishReason] = {"length": "length", "eos": "eos_token", "stop": "stop_sequence"}

# fields TGI/LoRAX/HF clients send, accepted only at the value that means "off" (see unsupported())
NEUTRAL: dict[str, tuple[Any, str]] = {
    "return_full_text": (False, "the output is never prefixed with the input"),
    "watermark": (False, "no watermarking"),
    "typical_p": (None, "no typical sampling"),
    "frequency_penalty": (None, "use repetition_penalty"),
    "grammar": (None, "no constrained decoding"),
    "response_format": (None, "no constrained decoding"),
    "merged_adapters": (None, "one adapter per request"),
    "ignore_eos_token": (False, "rows always end at EOS; use min_new_tokens"),
    "api_token": (None, "adapters come from the server's own folder"),
}


class Parameters(BaseModel):
    """Decoding settings; caps (max_new_tokens, num_beams, input length) come from the server settings.
    A null means the default."""

    model_config = ConfigDict(extra="forbid")

    max_new_tokens: int | None = Field(
        None, ge=1, description="Tokens to generate at most (server default if unset)"
    )
    min_new_tokens: int = Field(0, ge=0, description="Tokens to generate at least")
    num_beams: int = Field(1, ge=1, description="Beam search width (1 = greedy or sampling)")
    do_sample: bool = Field(False, description="Sample instead of greedy decoding")
    temperature: float | None = Field(None, gt=0, description="Sampling temperature (> 0; default 1)")
    top_p: float | None = Field(None, gt=0, le=1, description="Nucleus sampling mass (default 1)")
    top_k: int | None = Field(None, ge=0, description="Sample among the k most likely tokens (0 = off)")
    repetition_penalty: float | None = Field(None, gt=0, description="> 1 discourages repeating tokens")
    seed: int | None = Field(None, ge=0, lt=2**63, description="Seed of this row's sampling stream")
    stop: list[str] = Field(
        default_factory=list,
        max_length=MAX_STOP_SEQUENCES,
        description="Stop sequences: generation ends where the text first holds one; it is not returned",
    )
    truncate: bool | int | None = Field(
        None,
        description="Cut inputs longer than the server's max_input_tokens instead of refusing them with "
        "413 (true), or cut them to this many tokens (a number; the start and the closing EOS are kept)",
    )
    details: bool = Field(
        False,
        description="Add each generated token (id, text, logprob) to details, as TGI does (logprob null "
        "with beam search)",
    )
    top_n_tokens: int | None = Field(
        None, ge=0, le=MAX_LOGPROBS, description="With details: the n most likely tokens at each step"
    )
    return_k_alternatives: int | None = Field(
        None, ge=0, le=MAX_LOGPROBS, description="With details: k alternatives per token (LoRAX's name)"
    )
    adapter_id: str | None = Field(
        None, description="Adapter name (TGI/LoRAX convention; the same as ?adapter=)"
    )
    adapter_source: Literal["local"] | None = Field(
        None, description="Where the adapter comes from: only this server's adapter folder ('local')"
    )
    decoder_input_details: bool = Field(False, description="Not supported: the prompt's tokens are not returned")
    best_of: int | None = Field(None, description="Not supported beyond 1")
    return_full_text: bool = False
    watermark: bool = False
    typical_p: float | None = None
    frequency_penalty: float | None = None
    grammar: dict | None = None
    response_format: dict | None = None
    merged_adapters: dict | None = None
    ignore_eos_token: bool = False
    api_token: str | None = None

    def unsupported(self) -> None:
        """Refuse what inputtune does not do, naming it (InvalidParametersError)."""
        if self.decoder_input_details:
            raise InvalidParametersError(
                "decoder_input_details is not supported: inputtune does not return the input's tokens "
                "(prefill); send it false"
            )
        if self.best_of not in (None, 1):
            raise InvalidParametersError("best_of is not supported: send 1 or leave it out")
        for name, (neutral, why) in NEUTRAL.items():
            if getattr(self, name) != neutral:
                raise InvalidParametersError(f"{name} is not supported ({why}): leave it out")

    def generation_params(self, default_max_new_tokens: int) -> GenerationParams:
        """These settings as the decoder takes them (InvalidParametersError if they contradict)."""
        self.unsupported()
        alternatives = max(self.top_n_tokens or 0, self.return_k_alternatives or 0)
        # details with beam search: the tokens without their logprobs (beam search keeps no per-row policy)
        wants_logprobs = alternatives > 0 or (self.details and self.num_beams == 1)
        return GenerationParams(
            max_new_tokens=self.max_new_tokens if self.max_new_tokens is not None else default_max_new_tokens,
            min_new_tokens=self.min_new_tokens,
            num_beams=self.num_beams,
            do_sample=self.do_sample,
            temperature=1.0 if self.temperature is None else self.temperature,
            top_p=1.0 if self.top_p is None else self.top_p,
            top_k=self.top_k or 0,
            repetition_penalty=1.0 if self.repetition_penalty is None else self.repetition_penalty,
            seed=self.seed,
            stop=tuple(self.stop),
            logprobs=alternatives if wants_logprobs else None,
        )


class GenerateRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    inputs: str | list[str] = Field(..., description="One text, or a list of texts (one output each)")
    parameters: Parameters = Field(default_factory=Parameters)
    stream: bool = Field(False, description="POST /: stream the answer as server-sent events")


class AlternativeToken(BaseModel):
    id: int
    text: str
    logprob: float


class Token(BaseModel):
    """One generated token (TGI's shape; ``skipped`` and ``alternative_tokens`` are LoRAX's)."""

    id: int
    text: str = Field(description="The text this token adds to the output (concatenate them)")
    logprob: float | None
    special: bool
    skipped: bool = False
    alternative_tokens: list[AlternativeToken] | None = None


class Details(BaseModel):
    finish_reason: FinishReason
    input_tokens: int
    generated_tokens: int
    queue_ms: float = Field(description="Time waiting for a batch")
    inference_ms: float = Field(description="Time of the batch this row ran in")
    batch_rows: int = Field(description="Rows in that batch")
    batch_adapters: int = Field(description="Distinct adapters in that batch (the base model counts as one)")
    seed: int | None = Field(None, description="Seed used, for sampled rows")
    # with "details": true, what TGI and LoRAX clients read
    prompt_tokens: int | None = None
    skipped_tokens: int | None = None
    prefill: list[Token] | None = None
    tokens: list[Token] | None = None
    top_tokens: list[list[Token]] | None = None
    best_of_sequences: None = None


class GenerateResponse(BaseModel):
    generated_text: str
    adapter: str | None
    details: Details | None


class StreamDetails(BaseModel):
    finish_reason: FinishReason
    generated_tokens: int
    input_length: int
    prompt_tokens: int
    seed: int | None


class StreamResponse(BaseModel):
    """One server-sent event of /generate_stream: a token; the last one also the whole text."""

    index: int
    token: Token
    top_tokens: list[Token] | None = None
    generated_text: str | None = None
    details: StreamDetails | None = None


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
