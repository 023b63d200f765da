"""The front ends a load test can go through: the native API, TGI's (``POST /``) and OpenAI's
(``/v1/completions``), each non-streamed or streamed. Each knows how to ask for one planned request
and how to read its answer, so the same plan measures every front end.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

from ..errors import LoadTestError

APIS = ("native", "tgi", "openai")


@dataclass
class Answer:
    """What a front end answered: the text, the tokens generated, the adapter it answered for (as
    the front end names it), and the batch facts where the front end gives them."""

    text: str
    generated_tokens: int
    adapter: str | None
    details: dict


@dataclass(frozen=True)
class Request:
    path: str
    query: dict
    body: dict


class Api:
    """A front end. ``parameters`` are the native API's (max_new_tokens, min_new_tokens, num_beams)."""

    name = "native"
    streamed_path = "/generate_stream"

    def __init__(self, parameters: dict, base_id: str | None = None) -> None:
        self.parameters = parameters
        self.base_id = base_id

    def request(self, adapter: str | None, text: str, stream: bool) -> Request:
        parameters = dict(self.parameters, details=True) if stream else self.parameters
        path = self.streamed_path if stream else "/generate"
        return Request(
            path, {"adapter": adapter} if adapter else {}, {"inputs": text, "parameters": parameters}
        )

    def expected_adapter(self, adapter: str | None) -> str | None:
        return adapter

    def answer(self, body) -> Answer:
        if not isinstance(body, dict) or not isinstance(body.get("generated_text"), str):
            raise ValueError("200 without generated_text")
        details = body.get("details") or {}
        return Answer(
            body["generated_text"], int(details.get("generated_tokens", 0)), body.get("adapter"), details
        )

    def event(self, data: str) -> tuple[str, Answer | None]:
        """A streamed event's text, and the answer once the event is the last one."""
        event = json.loads(data)
        if "error" in event:
            raise ValueError(f"stream error: {event['error']}")
        answer = None
        if event.get("generated_text") is not None:
            details = event.get("details") or {}
            answer = Answer(event["generated_text"], int(details.get("generated_tokens", 0)), None, details)
        return event["token"]["text"], answer


class TgiApi(Api):
    """TGI's route, where TGI/LoRAX/Hugging Face clients post: the adapter in parameters.adapter_id."""

    name = "tgi"
    streamed_path = "/"

    def request(self, adapter: str | None, text: str, stream: bool) -> Request:
        parameters = dict(self.parameters, details=True)
        if adapter:
            parameters["adapter_id"] = adapter
        return Request("/", {}, {"inputs": text, "parameters": parameters, "stream": stream})

    def answer(self, body) -> Answer:
        if not isinstance(body, list) or len(body) != 1:
            raise ValueError("POST / answers a list of one")
        return super().answer(body[0])


class OpenAIApi(Api):
    """``/v1/completions``: ``model`` names the adapter (the base's id for the plain base), greedy."""

    name = "openai"

    def __init__(self, parameters: dict, base_id: str | None = None) -> None:
        super().__init__(parameters, base_id)
        if parameters.get("num_beams", 1) != 1:
            raise LoadTestError("the OpenAI routes do not do beam search: --num-beams 1 with --api openai")
        if base_id is None:
            raise LoadTestError("the OpenAI front end needs the base model's id (GET /v1/models)")

    def expected_adapter(self, adapter: str | None) -> str | None:
        return adapter or self.base_id

    def request(self, adapter: str | None, text: str, stream: bool) -> Request:
        body = {
            "model": self.expected_adapter(adapter),
            "prompt": text,
            "max_tokens": self.parameters.get("max_new_tokens", 16),
            "min_tokens": self.parameters.get("min_new_tokens", 0),
            "temperature": 0,
        }
        if stream:
            body |= {"stream": True, "stream_options": {"include_usage": True}}
        return Request("/v1/completions", {}, body)

    def answer(self, body) -> Answer:
        try:
            choice = body["choices"][0]
            return Answer(choice["text"], int(body["usage"]["completion_tokens"]), body["model"], {})
        except (KeyError, IndexError, TypeError) as e:
            raise ValueError(f"not a completion: {e}") from e

    def event(self, data: str) -> tuple[str, Answer | None]:
        event = json.loads(data)
        if "error" in event:
            raise ValueError(f"stream error: {event['error']}")
        if not event["choices"]:  # the usage chunk, last before [DONE]
            return "", Answer("", int(event["usage"]["completion_tokens"]), event["model"], {})
        return event["choices"][0]["text"], None


def make_api(name: str, parameters: dict, base_id: str | None = None) -> Api:
    classes = {"native": Api, "tgi": TgiApi, "openai": OpenAIApi}
    if name not in classes:
        raise LoadTestError(f"unknown API {name!r}: use one of {', '.join(APIS)}")
    return classes[name](parameters, base_id)
