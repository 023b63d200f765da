"""Bodies of the OpenAI-compatible routes (``/v1``), in OpenAI's shapes.

Fields of OpenAI's API that inputtune does not implement are accepted at their neutral value and
refused with a message otherwise; unknown fields are refused (422), so a typo never passes silently.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field
from pydantic.json_schema import JsonDict

from adapters import InvalidParametersError
from adapters.decoding.params import (
    MAX_LOGPROBS,
    MAX_STOP_CHARS,
    MAX_STOP_SEQUENCES,
    MAX_TOP_K,
    PENALTY_RANGE,
    TEMPERATURE_RANGE,
)

from .schemas import MAX_API_SEED, NAME_PATTERN, NON_EMPTY, JsonTyped

FinishReason = Literal["stop", "length"]
Text = Annotated[str, Field(json_schema_extra=NON_EMPTY)]
NEUTRAL_NUMBER: JsonDict = {"enum": [None, 0]}
# n > 1 copies of one greedy answer are refused: sampling (a temperature above 0, or the default 1)
SAMPLING_FOR_N: JsonDict = {
    "if": {"properties": {"n": {"minimum": 2}}, "required": ["n"]},
    "then": {"properties": {"temperature": {"anyOf": [{"type": "null"}, {"exclusiveMinimum": 0}]}}},
}


def _neutral(body: BaseModel, fields: dict[str, tuple[Any, ...]]) -> None:
    for name, allowed in fields.items():
        value = getattr(body, name)
        if value not in allowed:
            raise InvalidParametersError(f"{name}={value!r} is not supported by inputtune: leave it out")


class StreamOptions(JsonTyped):
    include_usage: bool = False


class SamplingFields(JsonTyped):
    """What completions and chat completions share."""

    model_config = ConfigDict(extra="forbid", json_schema_extra=SAMPLING_FOR_N)

    model: str = Field(
        description="An adapter's name; the served base model's id, or '', for the plain base",
        json_schema_extra={
            "anyOf": [{"const": ""}, {"type": "string", "pattern": NAME_PATTERN, "maxLength": 128}]
        },
    )
    temperature: float | None = Field(
        None,
        ge=0,
        le=TEMPERATURE_RANGE[1],
        description="0 = greedy (default 1, OpenAI's)",
        json_schema_extra={
            "anyOf": [
                {"const": 0},
                {"type": "number", "minimum": TEMPERATURE_RANGE[0], "maximum": TEMPERATURE_RANGE[1]},
                {"type": "null"},
            ]
        },
    )
    top_p: float | None = Field(None, gt=0, le=1)
    n: int = Field(1, ge=1, le=16, description="Choices per prompt (more than 1 only when sampling)")
    stream: bool = False
    stream_options: StreamOptions | None = None
    stop: (
        Annotated[str, Field(min_length=1, max_length=MAX_STOP_CHARS)]
        | Annotated[
            list[Annotated[str, Field(min_length=1, max_length=MAX_STOP_CHARS)]],
            Field(max_length=MAX_STOP_SEQUENCES),
        ]
        | None
    ) = Field(None, description="Stop sequences (up to 16); not returned")
    seed: int | None = Field(None, ge=0, le=MAX_API_SEED, description="Sampling seed; choice j uses seed + j")
    user: str | None = Field(None, description="Ignored")
    presence_penalty: float | None = Field(None, json_schema_extra=NEUTRAL_NUMBER)
    frequency_penalty: float | None = Field(None, json_schema_extra=NEUTRAL_NUMBER)
    logit_bias: dict[str, float] | None = Field(None, json_schema_extra={"maxProperties": 0})
    # beyond OpenAI's API (vLLM's names)
    top_k: int | None = Field(
        None, ge=0, le=MAX_TOP_K, description="Sample among the k most likely tokens (0 = off)"
    )
    repetition_penalty: float | None = Field(None, ge=PENALTY_RANGE[0], le=PENALTY_RANGE[1])
    min_tokens: int = Field(0, ge=0)

    def stop_sequences(self) -> tuple[str, ...]:
        stops = [self.stop] if isinstance(self.stop, str) else list(self.stop or [])
        if len(stops) > MAX_STOP_SEQUENCES:
            raise InvalidParametersError(f"stop takes at most {MAX_STOP_SEQUENCES} sequences")
        return tuple(stops)

    def check_neutral(self) -> None:
        _neutral(
            self,
            {
                "presence_penalty": (None, 0, 0.0),
                "frequency_penalty": (None, 0, 0.0),
                "logit_bias": (None, {}),
            },
        )


class CompletionRequest(SamplingFields):
    prompt: Text | Annotated[list[Text], Field(min_length=1)] = Field(
        description="A text, or a list of texts (one choice each, in order)"
    )
    max_tokens: int | None = Field(16, ge=1, description="Tokens to generate at most (OpenAI's default 16)")
    logprobs: int | None = Field(None, ge=0, le=min(5, MAX_LOGPROBS), description="Alternatives per token")
    echo: bool = Field(False, json_schema_extra={"const": False})
    suffix: str | None = Field(None, json_schema_extra={"enum": [None, ""]})
    best_of: int | None = Field(None, json_schema_extra={"enum": [None, 1]})

    def check_neutral(self) -> None:
        super().check_neutral()
        _neutral(self, {"echo": (False,), "suffix": (None, ""), "best_of": (None, 1)})


class ContentPart(JsonTyped):
    model_config = ConfigDict(extra="allow", json_schema_extra={"required": ["type", "text"]})

    type: str = Field(json_schema_extra={"const": "text"})
    text: str | None = Field(None, json_schema_extra=NON_EMPTY | {"type": "string"})


class ChatMessage(JsonTyped):
    model_config = ConfigDict(extra="allow", json_schema_extra={"required": ["role", "content"]})

    role: str = Field(json_schema_extra={"const": "user"})
    content: str | list[ContentPart] | None = Field(
        None,
        json_schema_extra={
            "anyOf": [
                NON_EMPTY | {"type": "string"},
                {"type": "array", "minItems": 1, "items": {"$ref": "#/components/schemas/ContentPart"}},
            ]
        },
    )


class ChatCompletionRequest(SamplingFields):
    messages: list[ChatMessage] = Field(
        description="One user message: the adapter's input", min_length=1, json_schema_extra={"maxItems": 1}
    )
    max_tokens: int | None = Field(None, ge=1)
    max_completion_tokens: int | None = Field(None, ge=1)
    logprobs: bool = False
    top_logprobs: int | None = Field(None, ge=0, le=MAX_LOGPROBS)
    response_format: dict | None = Field(
        None,
        json_schema_extra={
            "anyOf": [
                {"type": "null"},
                {
                    "type": "object",
                    "properties": {"type": {"const": "text"}},
                    "required": ["type"],
                    "additionalProperties": False,
                },
            ]
        },
    )
    tools: list | None = Field(None, json_schema_extra={"maxItems": 0})
    tool_choice: str | dict | None = Field(None, json_schema_extra={"enum": [None, "none"]})
    parallel_tool_calls: bool | None = None

    def check_neutral(self) -> None:
        super().check_neutral()
        _neutral(self, {"tools": (None, []), "tool_choice": (None, "none")})
        if self.response_format not in (None, {"type": "text"}):
            raise InvalidParametersError(
                "response_format is not supported beyond {'type': 'text'}: leave it out"
            )


class CompletionLogprobs(BaseModel):
    tokens: list[str]
    token_logprobs: list[float]
    top_logprobs: list[dict[str, float]] | None
    text_offset: list[int]


class CompletionChoice(BaseModel):
    index: int
    text: str
    logprobs: CompletionLogprobs | None = None
    finish_reason: FinishReason | None


class Usage(BaseModel):
    prompt_tokens: int
    completion_tokens: int
    total_tokens: int


class Completion(BaseModel):
    id: str
    object: Literal["text_completion"] = "text_completion"
    created: int
    model: str
    choices: list[CompletionChoice]
    usage: Usage | None = None
    system_fingerprint: str | None = None


class TopLogprob(BaseModel):
    token: str
    logprob: float
    bytes: list[int]


class ChatTokenLogprob(TopLogprob):
    top_logprobs: list[TopLogprob]


class ChatLogprobs(BaseModel):
    content: list[ChatTokenLogprob]


class AssistantMessage(BaseModel):
    role: Literal["assistant"] = "assistant"
    content: str


class ChatChoice(BaseModel):
    index: int
    message: AssistantMessage
    logprobs: ChatLogprobs | None = None
    finish_reason: FinishReason


class ChatCompletion(BaseModel):
    id: str
    object: Literal["chat.completion"] = "chat.completion"
    created: int
    model: str
    choices: list[ChatChoice]
    usage: Usage


class ModelCard(BaseModel):
    id: str
    object: Literal["model"] = "model"
    created: int
    owned_by: str = "inputtune"
    root: str
    parent: str | None = Field(None, description="For an adapter: the base model's id (vLLM's convention)")


class ModelList(BaseModel):
    object: Literal["list"] = "list"
    data: list[ModelCard]


class OpenAIErrorDetail(BaseModel):
    message: str
    type: str
    param: str | None = None
    code: int | str | None = None


class OpenAIError(BaseModel):
    error: OpenAIErrorDetail
