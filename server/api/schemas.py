"""Request and response bodies of the native API, which is TGI's: ``POST /generate``,
``POST /generate_stream`` and ``POST /`` take the same body, so TGI, LoRAX and Hugging Face clients
(``InferenceClient.text_generation``, ``lorax-client``, ``text-generation``) work unchanged.

Fields those clients send that inputtune does not implement are accepted at their neutral value
(null, false) and refused with a message otherwise, never silently ignored.
"""

from __future__ import annotations

import types
import typing
from typing import Annotated, Any, Literal, Union

from pydantic import BaseModel, ConfigDict, Field, ValidationInfo, field_validator
from pydantic.json_schema import JsonDict

from adapters import GenerationParams, InvalidParametersError
from adapters.decoding.params import (
    MAX_LOGPROBS,
    MAX_STOP_CHARS,
    MAX_STOP_SEQUENCES,
    MAX_TOP_K,
    PENALTY_RANGE,
    TEMPERATURE_RANGE,
)
from adapters.io import NAME_RE

NAME_PATTERN = NAME_RE.pattern
MAX_API_SEED = 2**53 - 1  # seeds a JSON number holds exactly (larger ones lose digits in many clients)

FinishReason = Literal["length", "eos_token", "stop_sequence"]
FINISH_REASONS: dict[str, FinishReason] = {"length": "length", "eos": "eos_token", "stop": "stop_sequence"}


NON_EMPTY: JsonDict = {
    "minLength": 1,
    "pattern": r"\S",
}  # what api/common.check_texts enforces, said in the schema


def _json_kinds(annotation: Any) -> set[type]:
    """The Python types of JSON values an annotation takes (str, int, float, bool, list, dict)."""
    origin = typing.get_origin(annotation)
    if origin is Annotated:
        return _json_kinds(typing.get_args(annotation)[0])
    if origin in (Union, types.UnionType):
        return set().union(*(_json_kinds(a) for a in typing.get_args(annotation)))
    if origin is Literal:
        return {type(v) for v in typing.get_args(annotation)}
    if origin in (list, tuple) or annotation in (list, tuple):
        return {list}
    if (
        origin is dict
        or annotation is dict
        or (isinstance(annotation, type) and issubclass(annotation, BaseModel))
    ):
        return {dict}
    return {annotation}


class JsonTyped(BaseModel):
    """A request body whose fields take JSON's types as JSON Schema does. Pydantic's lax mode would
    take "5" for a number and 0 for false, which the schema forbids; a float without a fraction (2.0)
    still counts as an integer, as JSON Schema counts it."""

    @field_validator("*", mode="before")
    @classmethod
    def _json_types(cls, value: Any, info: ValidationInfo) -> Any:
        assert info.field_name is not None
        kinds = _json_kinds(cls.model_fields[info.field_name].annotation)
        if isinstance(value, bool):
            ok = bool in kinds
        elif isinstance(value, str):
            ok = str in kinds
        elif isinstance(value, int | float):
            ok = bool(kinds & {int, float})
        else:
            return value  # lists, objects, null: pydantic checks them
        if not ok:
            raise ValueError(f"{type(value).__name__} is not a valid type here")
        return value


# why the fields TGI/LoRAX/HF clients send are accepted only at the value that means "off" (the
# value is the field's "const" in the schema; Parameters.unsupported() enforces it)
UNSUPPORTED_WHY: dict[str, str] = {
    "decoder_input_details": "inputtune does not return the input's tokens (prefill)",
    "return_full_text": "the output is never prefixed with the input",
    "watermark": "no watermarking",
    "typical_p": "no typical sampling",
    "frequency_penalty": "use repetition_penalty",
    "grammar": "no constrained decoding",
    "response_format": "no constrained decoding",
    "merged_adapters": "one adapter per request",
    "ignore_eos_token": "rows always end at EOS; use min_new_tokens",
    "api_token": "adapters come from the server's own folder",
}


def only(value: Any) -> dict[str, Any]:
    """Schema words for a field accepted at one value only (a client may send it, set to that)."""
    if value is None:
        return {"json_schema_extra": _null_only}
    return {"json_schema_extra": {"const": value}}


def _null_only(schema: JsonDict) -> None:
    schema.pop("anyOf", None)
    schema.update({"type": "null", "const": None})


# JSON Schema says what the cross-field checks of GenerationParams say, so that a client (or a fuzzer)
# reading the schema knows them: beam search neither samples nor returns logprobs nor stops at text.
BEAM_RULES: JsonDict = {
    "if": {"properties": {"num_beams": {"minimum": 2}}, "required": ["num_beams"]},
    "then": {
        "properties": {
            "do_sample": {"const": False},
            "stop": {"maxItems": 0},
            "top_n_tokens": {"enum": [None, 0]},
            "return_k_alternatives": {"enum": [None, 0]},
        }
    },
}


class Parameters(JsonTyped):
    """Decoding settings; caps (max_new_tokens, num_beams, input length) come from the server settings.
    A null means the default."""

    model_config = ConfigDict(extra="forbid", json_schema_extra=BEAM_RULES)

    max_new_tokens: int | None = Field(
        None, ge=1, description="Tokens to generate at most (server default if unset)"
    )
    min_new_tokens: int = Field(
        0, ge=0, description="Tokens to generate at least (up to max_new_tokens: generation ends there)"
    )
    num_beams: int = Field(1, ge=1, description="Beam search width (1 = greedy or sampling)")
    do_sample: bool = Field(False, description="Sample instead of greedy decoding")
    temperature: float | None = Field(
        None,
        ge=TEMPERATURE_RANGE[0],
        le=TEMPERATURE_RANGE[1],
        description="Sampling temperature (> 0; default 1)",
    )
    top_p: float | None = Field(None, gt=0, le=1, description="Nucleus sampling mass (default 1)")
    top_k: int | None = Field(
        None, ge=0, le=MAX_TOP_K, description="Sample among the k most likely tokens (0 = off)"
    )
    repetition_penalty: float | None = Field(
        None, ge=PENALTY_RANGE[0], le=PENALTY_RANGE[1], description="> 1 discourages repeating tokens"
    )
    seed: int | None = Field(None, ge=0, le=MAX_API_SEED, description="Seed of this row's sampling stream")
    stop: list[Annotated[str, Field(min_length=1, max_length=MAX_STOP_CHARS)]] = Field(
        default_factory=list,
        max_length=MAX_STOP_SEQUENCES,
        description="Stop sequences: generation ends where the text first holds one; it is not returned",
    )
    truncate: bool | Annotated[int, Field(ge=2)] | None = Field(
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
        None,
        description="Adapter name (TGI/LoRAX convention; the same as ?adapter=)",
        json_schema_extra={"pattern": NAME_PATTERN, "maxLength": 128},
    )
    adapter_source: Literal["local"] | None = Field(
        None, description="Where the adapter comes from: only this server's adapter folder ('local')"
    )
    # sent by TGI/LoRAX/Hugging Face clients, accepted at the value that means "off" (see unsupported())
    decoder_input_details: bool = Field(
        False, description="Not supported: the input's tokens are not returned", **only(False)
    )
    best_of: int | None = Field(
        None, description="Not supported beyond 1", json_schema_extra={"enum": [None, 1]}
    )
    return_full_text: bool = Field(False, **only(False))
    watermark: bool = Field(False, **only(False))
    typical_p: float | None = Field(None, **only(None))
    frequency_penalty: float | None = Field(None, **only(None))
    grammar: dict | None = Field(None, **only(None))
    response_format: dict | None = Field(None, **only(None))
    merged_adapters: dict | None = Field(None, **only(None))
    ignore_eos_token: bool = Field(False, **only(False))
    api_token: str | None = Field(None, **only(None))

    def unsupported(self) -> None:
        """Refuse what inputtune does not do, naming it (InvalidParametersError): every field whose
        schema has one accepted value ("const"), and best_of beyond 1."""
        for name in UNSUPPORTED_WHY:
            field = type(self).model_fields[name]
            neutral = field.default
            if getattr(self, name) != neutral:
                shown = "null" if neutral is None else str(neutral).lower()
                raise InvalidParametersError(
                    f"{name} is not supported ({UNSUPPORTED_WHY[name]}): send {shown} or leave it out"
                )
        if self.best_of not in (None, 1):
            raise InvalidParametersError("best_of is not supported: send 1 or leave it out")

    def generation_params(self, default_max_new_tokens: int) -> GenerationParams:
        """These settings as the decoder takes them (InvalidParametersError if they contradict)."""
        self.unsupported()
        alternatives = max(self.top_n_tokens or 0, self.return_k_alternatives or 0)
        # details with beam search: the tokens without their logprobs (beam search keeps no per-row policy)
        wants_logprobs = alternatives > 0 or (self.details and self.num_beams == 1)
        max_new = self.max_new_tokens if self.max_new_tokens is not None else default_max_new_tokens
        return GenerationParams(
            max_new_tokens=max_new,
            min_new_tokens=min(self.min_new_tokens, max_new),  # generation ends at max_new_tokens (as HF's)
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


Text = Annotated[str, Field(json_schema_extra=NON_EMPTY)]


class GenerateRequest(JsonTyped):
    """POST /generate: one text or a list."""

    model_config = ConfigDict(extra="forbid")

    inputs: Text | Annotated[list[Text], Field(json_schema_extra={"minItems": 1})] = Field(
        ..., description="One non-empty text, or a list of them (one output each)"
    )
    parameters: Parameters = Field(default_factory=Parameters)


class StreamRequest(JsonTyped):
    """POST /generate_stream: one text."""

    model_config = ConfigDict(extra="forbid")

    inputs: Text = Field(..., description="One non-empty text")
    parameters: Parameters = Field(default_factory=Parameters)


class CompatRequest(GenerateRequest):
    """POST /, where TGI/LoRAX/Hugging Face clients post: /generate's body, streamed when asked
    (one text then)."""

    model_config = ConfigDict(
        json_schema_extra={
            "if": {"properties": {"stream": {"const": True}}, "required": ["stream"]},
            "then": {"properties": {"inputs": {"type": "string"}}},
        }
    )

    stream: bool = Field(False, description="Stream the answer as server-sent events (one text only)")


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


def inline_schema(model: type[BaseModel]) -> JsonDict:
    """A model's JSON schema with its definitions written in place (for a response documented by
    hand, whose ``$defs`` an OpenAPI document would not resolve)."""
    schema = model.model_json_schema()
    defs = schema.pop("$defs", {})

    def inline(node: Any) -> Any:
        if isinstance(node, dict):
            ref = node.get("$ref", "")
            if ref.startswith("#/$defs/"):
                return inline(defs[ref.removeprefix("#/$defs/")])
            return {k: inline(v) for k, v in node.items()}
        if isinstance(node, list):
            return [inline(v) for v in node]
        return node

    return inline(schema)


def sse_schema(*bodies: type[BaseModel] | JsonDict, done: str | None = None) -> JsonDict:
    """The schema of one server-sent event whose ``data`` is JSON holding one of ``bodies`` (models or
    schemas), or the literal ``done`` sentinel (OpenAI's ``[DONE]``). The way OpenAPI 3.2 documents
    event streams: the event's fields, ``data`` a string with ``contentMediaType``/``contentSchema``."""
    schemas = [b if isinstance(b, dict) else inline_schema(b) for b in bodies]
    data: JsonDict = {
        "type": "string",
        "contentMediaType": "application/json",
        "contentSchema": schemas[0] if len(schemas) == 1 else {"anyOf": schemas},
    }
    if done is not None:
        data = {"anyOf": [{"const": done}, data]}
    return {
        "type": "object",
        "required": ["data"],
        "properties": {"event": {"type": "string"}, "id": {"type": "string"}, "data": data},
    }
