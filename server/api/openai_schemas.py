"""Bodies of the OpenAI-compatible routes (``/v1``), in OpenAI's shapes.

Fields of OpenAI's API that inputtune does not implement are accepted at their neutral value and
refused with a message otherwise; unknown fields are refused (422), so a typo never passes silently.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from adapters import InvalidParametersError
from adapters.decoding.params import MAX_LOGPROBS, MAX_STOP_SEQUENCES

FinishReason = Literal["stop", "length"]


def _neutral(body: BaseModel, fields: dict[str, tuple[Any, ...]]) -> None:
    for name, allowed in fields.items():
        value = getattr(body, name)
        if value not in allowed:
            raise InvalidParametersError(f"{name}={value!r} is not supported by inputtune: leave it out")


class StreamOptions(BaseModel):
    include_usage: bool = False


class SamplingFields(BaseModel):
    """What completions and chat completions share."""

    model_config = ConfigDict(extra="forbid")

    model: str = Field(description="An adapter's name; the served base model's id, or '', for the plain base")
    temperature: float | None = Field(None, ge=0, le=1000, description="0 = greedy (default 1, OpenAI's)")
    top_p: float | None = Field(None, gt=0, le=1)
    n: int = Field(1, ge=1, le=16, description="Choices per prompt (more than 1 only when sampling)")
    stream: bool = False
    stream_options: StreamOptions | None = None
    stop: str | list[str] | None = Field(None, description="Stop sequences (up to 16); not returned")
    seed: int | None = Field(None, ge=0, lt=2**63, description="Sampling seed; choice j uses seed + j")
    user: str | None = Field(None, description="Ignored")
    presence_penalty: float | None = None
    frequency_penalty: float | None = None
    logit_bias: dict[str, float] | None = None
    # beyond OpenAI's API (vLLM's names)
    top_k: int | None = Field(None, ge=0, description="Sample among the k most likely tokens (0 = off)")
    repetition_penalty: float | None = Field(None, gt=0)
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
    prompt: str | list[str] = Field(description="A text, or a list of texts (one choice each, in order)")
    max_tokens: int | None = Field(16, ge=1, description="Tokens to generate at most (OpenAI's default 16)")
    logprobs: int | None = Field(None, ge=0, le=min(5, MAX_LOGPROBS), description="Alternatives per token")
    echo: bool = False
    suffix: str | None = None
    best_of: int | None = None

    def check_neutral(self) -> None:
        super().check_neutral()
        _neutral(self, {"echo": (False,), "suffix": (None, ""), "best_of": (None, 1)})


class ContentPart(BaseModel):
    model_config = ConfigDict(extra="allow")

    type: str
    text: str | None = None


class ChatMessage(BaseModel):
    model_config = ConfigDict(extra="allow")

    role: str
    content: str | list[ContentPart] | None = None


class ChatCompletionRequest(SamplingFields):
    messages: list[ChatMessage] = Field(description="One user message: the adapter's input")
    max_tokens: int | None = Field(None, ge=1)
    max_completion_tokens: int | None = Field(None, ge=1)
    logprobs: bool = False
    top_logprobs: int | None = Field(None, ge=0, le=MAX_LOGPROBS)
    response_format: dict | None = None
    tools: list | None = None
    tool_choice: str | dict | None = None
    parallel_tool_calls: bool | None = None

    def check_neutral(self) -> None:
        super().check_neutral()
        _neutral(self, {"tools": (None, []), "tool_choice": (None, "none")})
        if self.response_format not in (None, {"type": "text"}):
            raise InvalidParametersError("response_format is not supported beyond {'type': 'text'}: leave it out")


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
